"""Feed in, articles and republished items out: golden files, over real HTTP and disk.

Each tests/data/articles/NAME.xml (or NAME.json) is served by a local HTTP server as its row of
``CASES`` says, polled into a fresh store, and must give NAME.golden: the poll's
warnings, every article file, and the republished items (JSON Feed items, RSS titles).
The server's address is written ``http://feeds.test`` in the goldens. A rebuild must give
the same files. ``AGGREGATOR_REGOLD=1`` rewrites the goldens; then read the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import pytest
from conftest import DATA, FIXED_NOW, Harness, ManualClock, write_config
from feedcheck import check
from lxml import html
from pytest_httpserver import HTTPServer
from werkzeug import Response

from aggregator.content.clean import CleanOptions
from aggregator.content.convert import SourceView, convert_entry
from aggregator.content.parse import parse_feed
from aggregator.models import SourceOutcome
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

CASES_DIR = DATA / "articles"
REGOLD = os.environ.get("AGGREGATOR_REGOLD") == "1"
PLACEHOLDER = "http://feeds.test"


@dataclass(frozen=True)
class Case:
    """How a case's feed is served."""

    path: str  # where the document is
    content_type: str = "application/xml"
    headers: dict[str, str] = field(default_factory=dict)  # more response headers
    redirect_from: str | None = None  # the source's URL: a 301 to ``path``
    now: datetime = FIXED_NOW  # the time of the poll

    @property
    def source_path(self) -> str:
        return self.redirect_from or self.path


CASES = {
    "relative-urls-atom": Case(
        "/a/b/feed.atom", headers={"Content-Location": "/site/feeds/all.atom"}
    ),
    "relative-urls-rss": Case("/news/feed/rss.xml", redirect_from="/old/rss"),
    "untitled": Case("/untitled.rss"),
    "title-types": Case("/titles.atom"),
    "repeated-ids": Case("/revisions.atom"),
    "constant-guid": Case("/constant.rss"),
    "future-dates": Case("/future.atom"),
    "microblog": Case("/u/feed.json", "application/feed+json"),
}
INPUTS = {p.stem: p for p in sorted(CASES_DIR.glob("*.xml")) + sorted(CASES_DIR.glob("*.json"))}
NAMES = sorted(INPUTS)


def serve(server: HTTPServer, name: str, case: Case) -> str:
    """Serve a case's document as its row says; returns the source's URL."""
    body = INPUTS[name].read_bytes()
    headers = {"Content-Type": case.content_type, **case.headers}
    server.expect_request(case.path).respond_with_response(Response(body, headers=headers))
    if case.redirect_from is not None:
        server.expect_request(case.redirect_from).respond_with_response(
            Response("", status=301, headers={"Location": server.url_for(case.path)})
        )
    return server.url_for(case.source_path)


@pytest.fixture
def polled(
    httpserver: HTTPServer, tmp_path: Path
) -> Iterator[Callable[[str], tuple[Harness, SourceOutcome]]]:
    """Poll one case into a fresh store; returns the harness and the poll's outcome."""
    made: list[Harness] = []

    def poll(name: str) -> tuple[Harness, SourceOutcome]:
        case = CASES[name]
        url = serve(httpserver, name, case)
        h = Harness(write_config(tmp_path, [{"url": url, "categories": ["Golden", name]}]))
        made.append(h)
        h.now = case.now
        [outcome] = h.poll()
        assert outcome.ok, outcome.error
        return h, outcome

    yield poll
    for h in made:
        h.close()


def republished(h: Harness) -> tuple[list[dict[str, object]], list[str]]:
    """The JSON Feed items and the RSS item titles of /feeds/all, both checked valid."""
    client = create_app(h.config, h.store, clock=ManualClock(h.now)).test_client()
    found: dict[str, bytes] = {}
    for kind in ("json", "rss", "atom"):
        answer = client.get(f"/feeds/all.{kind}")
        assert answer.status_code == 200
        assert check(kind, answer.data, f"http://localhost/feeds/all.{kind}") == [], kind
        found[kind] = answer.data
    assert feedparser.parse(found["rss"]).bozo == 0
    items = json.loads(found["json"])["items"]
    titles = [str(e.title) for e in feedparser.parse(found["rss"]).entries]
    return items, titles


def golden_text(h: Harness, outcome: SourceOutcome) -> str:
    """A case's golden: warnings, article files, republished items."""
    parts = ["# warnings", *(f"- {w}" for w in outcome.warnings)]
    for path in h.files():
        parts += [f"# file {path.relative_to(h.posts)}", path.read_text(encoding="utf-8")]
    items, titles = republished(h)
    parts += ["# RSS titles", *(f"- {t}" for t in titles)]
    parts += ["# JSON Feed items", json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True)]
    return "\n".join(parts) + "\n"


def test_every_case_has_a_row() -> None:
    assert NAMES
    assert set(NAMES) == set(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_golden(
    name: str, polled: Callable[[str], tuple[Harness, SourceOutcome]], httpserver: HTTPServer
) -> None:
    h, outcome = polled(name)
    actual = golden_text(h, outcome).replace(httpserver.url_for("/").rstrip("/"), PLACEHOLDER)
    golden = CASES_DIR / f"{name}.golden"
    if REGOLD:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")
    # Re-cleaned from the stored raw entries: the very same files.
    before = {p: p.read_bytes() for p in h.files()}
    [rebuilt] = h.poller.rebuild(h.config.sources)
    assert rebuilt.ok
    assert (rebuilt.updated, rebuilt.unchanged) == (0, len(before))
    assert {p: p.read_bytes() for p in h.files()} == before


def test_the_dashboard_shows_made_up_titles(
    polled: Callable[[str], tuple[Harness, SourceOutcome]],
) -> None:
    h, _ = polled("untitled")
    client = create_app(h.config, h.store, clock=ManualClock(h.now)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "The council approved the new budget on Tuesday</a>" in page
    assert "(untitled)</a>" in page  # the one entry with no text at all
    [row] = [r for r in h.store.entries() if r["link"] == "https://notes.example/n1"]
    article = client.get(f"/articles/{row['uid']}").get_data(as_text=True)
    assert "<h1>The council approved the new budget on Tuesday</h1>" in article


# Each element whose URLs the cleaner resolves (and keeps), with those attributes.
RESOLVED = {
    "a": ("href",),
    "img": ("src",),
    "blockquote": ("cite",),
    "q": ("cite",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "source": ("src",),
}
VIEW = SourceView("s", ("A",), "A", CleanOptions())


def references(fragment: str) -> list[tuple[str, dict[str, str], bool]]:
    """(tag, URL attributes, lazy?) of every element of ``RESOLVED``, in document order.

    A lazy image (data-src, srcset) is one feedparser leaves alone and we load.
    """
    root = html.fragment_fromstring(fragment or "<p></p>", create_parent="div")
    found = []
    for element in root.iter(*RESOLVED):
        assert isinstance(element.tag, str)
        urls = {a: str(element.get(a)) for a in RESOLVED[element.tag] if element.get(a)}
        lazy = element.get("data-src") is not None or element.get("srcset") is not None
        found.append((element.tag, urls, lazy))
    return found


@pytest.mark.parametrize("name", ["relative-urls-atom", "relative-urls-rss"])
def test_relative_urls_resolve_as_feedparser_does(name: str) -> None:
    """feedparser's own resolution (xml:base, Content-Location, document URL) is the
    oracle for every link and image of the bodies; the entry links are its own."""
    case = CASES[name]
    url = "https://feeds.example" + case.path  # where the document was, after redirects
    body = INPUTS[name].read_bytes()
    headers = {k.lower(): v for k, v in case.headers.items()}
    ours = parse_feed(url, body, headers)
    location = urljoin(url, headers.get("content-location", url))
    theirs = feedparser.parse(
        body,
        response_headers={"content-location": location},
        resolve_relative_uris=True,
        sanitize_html=False,
    )
    assert len(ours.entries) == len(theirs.entries) > 1
    compared = 0
    for entry, raw in zip(ours.entries, theirs.entries, strict=True):
        article = convert_entry(entry, VIEW, FIXED_NOW)
        assert entry.link == raw.get("link")
        expected = raw["content"][0]["value"] if raw.get("content") else raw.get("summary")
        pairs = zip(references(article.body_html), references(expected), strict=True)
        for (tag, urls, _), (their_tag, their_urls, lazy) in pairs:
            assert tag == their_tag
            if not lazy:
                assert urls == their_urls
                compared += len(urls)
    assert compared >= 6  # not a vacuous comparison


def test_goldens_have_their_case() -> None:
    """Runs after the cases, so a regold run writes the goldens before this checks them."""
    assert {p.stem for p in CASES_DIR.glob("*.golden")} == set(NAMES)
