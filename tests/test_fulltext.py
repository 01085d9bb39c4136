"""Full text: a summary-only feed's articles take their bodies from the entries' pages.

Every case runs against a real local HTTP server that counts the requests for each page,
a real store and real article files (the pages are small ones of our own, under
tests/data/fulltext/).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FIXED_NOW, Gate, Harness, HarnessFactory, MakeConfig, item, rss
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.cli import cli
from aggregator.config import load_config
from aggregator.content.fulltext import Page, extract_page
from aggregator.models import Changes
from aggregator.poll.resolve import resolve_source
from aggregator.poll.scheduler import Service
from aggregator.store import Store
from aggregator.store.pages import page_notes
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

DATA = Path(__file__).parent / "data" / "fulltext"
BOILERPLATE = (
    "NavNews",
    "AdvertBuy",
    "AdvertSidebar",
    "RelatedLinks",
    "RelatedStory",
    "CommentsHeading",
    "CommentText",
    "FooterText",
    "ShareThis",
    "analytics",
)
ARTICLE_TEXT = (
    "After eleven years behind scaffolding",
    "replaced the rusted lantern room",
    "one hundred and twelve steps",
    "open to everyone",
    "history of the lighthouse",
)


class Site:
    """A local site: a feed and its article pages, counting the requests for each path."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.hits: Counter[str] = Counter()
        self.pages: dict[str, tuple[int, bytes, str]] = {}
        self.items: list[str] = []
        server.expect_request("/feed.xml").respond_with_handler(self._feed)
        for path in ("/a/1", "/a/2", "/a/3", "/a/4"):
            server.expect_request(path).respond_with_handler(self._page)

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def add(self, number: int, summary: str = "<p>A two-line teaser.</p>") -> None:
        link = self.url(f"/a/{number}")
        self.items.append(item(f"g{number}", f"Story {number}", summary, link=link))

    def page(
        self, number: int, body: bytes | str, status: int = 200, kind: str = "text/html"
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.pages[f"/a/{number}"] = (status, data, kind)

    def _feed(self, request: Request) -> Response:
        return Response(rss("".join(self.items)), content_type="application/rss+xml")

    def _page(self, request: Request) -> Response:
        self.hits[request.path] += 1
        status, body, kind = self.pages.get(request.path, (404, b"not found", "text/plain"))
        return Response(body, status=status, content_type=kind)


@pytest.fixture
def site(threaded_httpserver: HTTPServer) -> Site:
    return Site(threaded_httpserver)


def setup(make_config: MakeConfig, harness: HarnessFactory, site: Site, **source: Any) -> Harness:
    path = make_config(
        [
            {
                "url": site.url("/feed.xml"),
                "categories": ["news", "coast", "gazette"],
                "full_text": True,
                **source,
            }
        ]
    )
    return harness(path)


def body_of(h: Harness, title: str) -> str:
    [path] = [p for p in h.files() if p.name.startswith(title.replace(" ", "-"))] or [
        p for p in h.files() if title in p.read_text(encoding="utf-8")
    ]
    return path.read_text(encoding="utf-8")


def notes(h: Harness) -> dict[str, dict[str, Any]]:
    with h.store.reading() as conn:
        return {n["title"]: n for n in page_notes(conn, "gazette")}


def test_summary_only_feed_gets_the_full_text_without_boilerplate(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1)
    site.page(1, (DATA / "article.html").read_bytes())
    h = setup(make_config, harness, site, remove=[".share-box"])
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1
    # The pass's changes (for the hooks) hold the file as the poll wrote it and as the
    # page pass rewrote it.
    [path] = h.files()
    relative = str(path.relative_to(h.posts))
    assert outcome.changes.written == (relative, relative)
    text = body_of(h, "Story 1")
    for sentence in ARTICLE_TEXT:
        assert sentence in text
    for junk in BOILERPLATE:
        assert junk not in text, junk
    assert "A two-line teaser" not in text
    # Cleaned as feed content: the lazy image is real, relative URLs are the page's.
    assert f'src="{site.url("/images/lighthouse.jpg")}"' in text
    assert "blank.gif" not in text
    assert f'href="{site.url("/history/lighthouse")}"' in text
    assert notes(h)["Story 1"]["body_from"] == "page"
    # The feeds republish the full text too.
    [entry] = h.store.entries("gazette")
    assert "one hundred and twelve steps" in entry["body_html"]


def test_selector_takes_exactly_that_element(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1, "<p>Fish.</p>")
    site.page(1, (DATA / "selected.html").read_bytes())
    h = setup(make_config, harness, site, full_text_selector="#story", remove=[".promo"])
    h.poll()
    text = body_of(h, "Story 1")
    assert "StoryBody The fish market moved" in text
    assert "Traders said the light was better" in text
    assert "LeadColumn" not in text and "NavHome" not in text
    assert "PromoText" not in text  # remove: applies as usual


def test_a_selector_that_matches_nothing_keeps_the_feed_body(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1, "<p>The feed's own teaser.</p>")
    site.page(1, (DATA / "selected.html").read_bytes())
    h = setup(make_config, harness, site, full_text_selector=".no-such-thing")
    h.poll()
    assert "The feed's own teaser." in body_of(h, "Story 1")
    note = notes(h)["Story 1"]
    assert note["body_from"] == "feed"
    assert "'.no-such-thing' matched nothing" in note["reason"]


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (404, "<html><body><p>Not here</p></body></html>", "text/html", "HTTP 404"),
        (200, "", "text/html", "the page is empty"),
        (200, "   \n  ", "text/html", "the page is empty"),
        (200, "<html><head></head><body></body></html>", "text/html", "no main content"),
        (200, b"%PDF-1.7 binary", "application/pdf", "not an HTML page (application/pdf)"),
    ],
    ids=["404", "empty", "blank", "no-content", "pdf"],
)
def test_a_failed_extraction_keeps_the_feed_body_and_says_why(
    make_config: MakeConfig,
    harness: HarnessFactory,
    site: Site,
    status: int,
    body: str | bytes,
    kind: str,
    reason: str,
) -> None:
    site.add(1, "<p>The feed's own teaser.</p>")
    site.page(1, body, status, kind)
    h = setup(make_config, harness, site)
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1  # the feed's poll is not failed by its pages
    assert "The feed's own teaser." in body_of(h, "Story 1")
    note = notes(h)["Story 1"]
    assert note["body_from"] == "feed"
    assert reason in note["reason"]
    # The source page and the article page say so (the app reads the source from the
    # index: synced first, as every entry point does).
    h.store.sync_sources(h.config.sources, h.now)
    app = create_app(h.config, h.store)
    page = app.test_client().get("/sources/gazette").get_data(as_text=True)
    assert 'id="pages"' in page and reason.replace("'", "&#39;") in page
    [entry] = h.store.entries("gazette")
    article = app.test_client().get(f"/articles/{entry['uid']}").get_data(as_text=True)
    assert "Body from the feed" in article


def test_an_extraction_much_shorter_than_the_feeds_body_is_not_used(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    long_body = "".join(
        f"<p>FeedParagraph {i} with a good many words in it.</p>" for i in range(20)
    )
    site.add(1, long_body)
    site.page(1, (DATA / "short.html").read_bytes())
    h = setup(make_config, harness, site)
    h.poll()
    text = body_of(h, "Story 1")
    assert "FeedParagraph 19" in text and "TeaserText" not in text
    assert "much shorter than the feed's own" in notes(h)["Story 1"]["reason"]


def test_each_page_is_fetched_once_across_polls(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1)
    site.page(1, (DATA / "article.html").read_bytes())
    site.page(2, (DATA / "article.html").read_bytes().replace(b"Harbour", b"Second"))
    h = setup(make_config, harness, site)
    h.poll()
    assert site.hits == {"/a/1": 1}
    site.add(2)  # the feed changes: one new entry
    h.poll()
    h.poll()
    assert site.hits == {"/a/1": 1, "/a/2": 1}
    assert "one hundred and twelve steps" in body_of(h, "Story 1")
    assert "one hundred and twelve steps" in body_of(h, "Story 2")


def test_a_failed_page_is_not_asked_for_again_until_a_refetch(
    make_config: MakeConfig, harness: HarnessFactory, site: Site, tmp_path: Path
) -> None:
    site.add(1, "<p>The feed's own teaser.</p>")
    site.page(1, "gone", 500, "text/plain")
    h = setup(make_config, harness, site)
    h.poll()
    h.poll()
    assert site.hits == {"/a/1": 1}
    assert "HTTP 500" in notes(h)["Story 1"]["reason"]
    site.page(1, (DATA / "article.html").read_bytes())
    h.close()
    result = CliRunner().invoke(
        cli, ["refetch", "--source", "gazette", "--config", str(h.config_path)]
    )
    assert result.exit_code == 0, result.output
    assert "1 pages fetched, 1 bodies from the page" in result.output
    assert site.hits == {"/a/1": 2}
    h.reload()
    assert "one hundred and twelve steps" in body_of(h, "Story 1")
    assert notes(h)["Story 1"]["body_from"] == "page"


def test_rebuild_extracts_again_from_the_stored_page_without_fetching(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1, "<p>Fish.</p>")
    site.page(1, (DATA / "selected.html").read_bytes())
    h = setup(make_config, harness, site, full_text_selector="#story")
    h.poll()
    assert "LeadColumn" not in body_of(h, "Story 1")
    # A new selector, then a rebuild: the stored page gives the new body.
    setup(make_config, harness, site, full_text_selector=".lead-column").close()
    h.close()
    h.reload()
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.ok
    text = body_of(h, "Story 1")
    assert "LeadColumn An opinion column" in text and "StoryBody" not in text
    assert site.hits == {"/a/1": 1}


def test_refetch_fetches_the_pages_again(
    make_config: MakeConfig, harness: HarnessFactory, site: Site
) -> None:
    site.add(1)
    site.page(1, (DATA / "article.html").read_bytes())
    h = setup(make_config, harness, site)
    h.poll()
    site.page(1, (DATA / "article.html").read_bytes().replace(b"eleven years", b"twelve years"))
    done = h.poller.refetch(h.config.sources[0])
    assert (done.fetched, done.from_page, done.error) == (1, 1, None)
    assert site.hits == {"/a/1": 2}
    assert "After twelve years behind scaffolding" in body_of(h, "Story 1")


def test_refetch_refuses_a_source_without_full_text(make_config: MakeConfig, site: Site) -> None:
    path = make_config([{"url": site.url("/feed.xml"), "categories": ["news", "coast", "g"]}])
    result = CliRunner().invoke(cli, ["refetch", "--source", "g", "--config", str(path)])
    assert result.exit_code != 0 and "does not have full_text on" in result.output


def test_full_text_defaults_from_settings(make_config: MakeConfig, site: Site) -> None:
    path = make_config(
        [
            {"url": site.url("/feed.xml"), "categories": ["a", "b", "on"]},
            {"url": site.url("/feed.xml"), "categories": ["a", "b", "off"], "full_text": False},
        ],
        full_text=True,
    )
    config = load_config(path)
    resolved = {s.key: resolve_source(config, s) for s in config.sources}
    assert resolved["on"].full_text and not resolved["off"].full_text


def test_a_bad_selector_is_a_config_error(make_config: MakeConfig, site: Site) -> None:
    path = make_config(
        [{"url": site.url("/feed.xml"), "categories": ["a"], "full_text_selector": "div[["}]
    )
    result = CliRunner().invoke(cli, ["check-config", "--config", str(path)])
    assert result.exit_code != 0 and "full_text_selector" in result.output


@pytest.mark.parametrize("charset", ["utf-8", "gb18030", "shift_jis"])
def test_extraction_reads_the_declared_encoding(charset: str) -> None:
    text = "灯塔重新开放，居民排队参观。" if charset != "shift_jis" else "灯台が再び開かれた。"
    html = (
        f'<html><head><meta charset="{charset}"></head><body><div id="x">'
        f"<p>{text * 6}</p></div></body></html>"
    )
    extracted = extract_page(Page("https://example.com/a", html.encode(charset)), "#x")
    assert extracted.html is not None and text in extracted.html
    header = extract_page(
        Page("https://example.com/a", html.encode(charset), f"text/html; charset={charset}")
    )
    assert header.html is not None and text in header.html


def test_the_service_records_the_poll_before_the_pages_arrive(
    make_config: MakeConfig, threaded_httpserver: HTTPServer
) -> None:
    """Under `run`, a held page never holds the feed's poll: the poll is recorded and the
    next one scheduled, with the feed's body in the article, while the page is in flight."""
    gate = Gate()
    article = (DATA / "article.html").read_bytes()
    threaded_httpserver.expect_request("/a/1").respond_with_handler(
        gate.held(lambda _request: Response(article, content_type="text/html"))
    )
    link = threaded_httpserver.url_for("/a/1")
    threaded_httpserver.expect_request("/feed.xml").respond_with_data(
        rss(item("g1", "Story 1", "<p>A two-line teaser.</p>", link=link)),
        content_type="application/rss+xml",
    )
    path = make_config(
        [
            {
                "url": threaded_httpserver.url_for("/feed.xml"),
                "categories": ["news", "coast", "gazette"],
                "full_text": True,
            }
        ],
        workers=1,
    )
    config = load_config(path)
    store = Store(config.settings.database, config.settings.posts_dir)
    service = Service(path, config, store, clock=lambda: FIXED_NOW, rng=random.Random(5))
    told: list[Changes] = []
    service.change_listeners.append(told.append)
    try:
        service.start(paused=True)
        job = threading.Thread(target=service._run, args=("gazette",))
        job.start()
        gate.wait(lambda g: g.active == 1, "the page request")
        [poll] = store.polls("gazette")
        assert poll["new"] == 1 and poll["error"] is None
        assert service.next_run("gazette") is not None
        [entry] = store.entries("gazette")
        assert "A two-line teaser." in entry["body_html"]
        assert [len(c.written) for c in told] == [1]  # the poll's news, already out
        gate.open()
        job.join()
        [entry] = store.entries("gazette")
        assert "one hundred and twelve steps" in entry["body_html"]
        # The page pass's rewrite is news for the hooks too.
        assert [c.written for c in told] == [(entry["path"],), (entry["path"],)]
    finally:
        gate.open()
        service.shutdown(wait=True)
        store.close()
