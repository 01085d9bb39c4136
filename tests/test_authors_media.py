"""Authors and enclosures, golden: tests/data/authors-media/NAME.xml, polled as one
source, must give NAME.golden: its article files (front matter and body), then the items
of its RSS, Atom and JSON feeds as the web serves them.

Each feed must also be valid (tests/feedcheck.py) and read back by feedparser without a
complaint. After a deliberate change, ``AGGREGATOR_REGOLD=1`` rewrites the goldens from the
code; then read the diff.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

import feedparser
import pytest
import yaml
from conftest import DATA, Harness, HarnessFactory, MakeConfig
from feedcheck import check
from lxml import etree

from aggregator.content.parse import parse_feed
from aggregator.content.publish import FeedMeta, render
from aggregator.models import Enclosure, Person, PublishedEntry
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

CASES = DATA / "authors-media"
NAMES = sorted(p.name.removesuffix(".xml") for p in CASES.glob("*.xml"))
REGOLD = os.environ.get("AGGREGATOR_REGOLD") == "1"
# Per case: the site (the source's middle category, the articles' `author` by default)
# and settings.front_matter (the rest of the config is the same for all).
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "newspaper.rss": ("The Daily Example", {}),  # the seed's contract: author is the site
    "several-authors.atom": ("Research Notes", {"author": "entry"}),
    "podcast.rss": ("Example Cast", {}),
    "video.atom": ("Example Video", {"author": "entry"}),
}
ATOM = "{http://www.w3.org/2005/Atom}"


def source(name: str) -> dict[str, Any]:
    return {"url": str(CASES / f"{name}.xml"), "categories": ["Media", SETTINGS[name][0], "All"]}


def poll_case(name: str, make_config: MakeConfig, harness: HarnessFactory) -> Harness:
    config = make_config(
        [source(name)], front_matter=SETTINGS[name][1], fetch={"file_roots": [str(CASES)]}
    )
    h = harness(config)
    [outcome] = h.poll()
    assert outcome.ok and outcome.failed == 0, outcome
    return h


def served(h: Harness, kind: str) -> bytes:
    client = create_app(h.config, h.store).test_client()
    response = client.get(f"/feeds/all.{kind}")
    assert response.status_code == 200
    return response.get_data()


def golden_text(h: Harness, feeds: dict[str, bytes]) -> str:
    parts: list[str] = []
    for path in h.files():
        parts.append(f"=== article {path.relative_to(h.posts).as_posix()}\n")
        parts.append(path.read_text(encoding="utf-8"))
    items = etree.fromstring(feeds["rss"]).iter("item")
    parts.append("=== rss items\n")
    parts += [etree.tostring(i, encoding="unicode", pretty_print=True) for i in items]
    parts.append("=== atom entries\n")
    entries = etree.fromstring(feeds["atom"]).iter(f"{ATOM}entry")
    parts += [etree.tostring(e, encoding="unicode", pretty_print=True) for e in entries]
    parts.append("=== json items\n")
    document = json.loads(feeds["json"])
    parts.append(json.dumps(document["items"], ensure_ascii=False, indent=2) + "\n")
    return "".join(parts)


def test_every_case_has_its_settings() -> None:
    assert set(NAMES) == set(SETTINGS)


@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str, make_config: MakeConfig, harness: HarnessFactory) -> None:
    h = poll_case(name, make_config, harness)
    feeds = {kind: served(h, kind) for kind in ("rss", "atom", "json")}
    for kind, body in feeds.items():
        assert check(kind, body) == [], kind
        if kind != "json":
            assert feedparser.parse(body).bozo == 0, kind
    actual = golden_text(h, feeds)
    golden = CASES / f"{name}.golden"
    if REGOLD:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_every_golden_has_its_feed() -> None:
    assert {p.name.removesuffix(".golden") for p in CASES.glob("*.golden")} == set(NAMES)


def front_matters(h: Harness) -> dict[str, dict[str, Any]]:
    """Each article's front matter, by title."""
    found = {}
    for path in h.files():
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])
        found[front["title"]] = front
    return found


def test_what_readers_get_back(make_config: MakeConfig, harness: HarnessFactory) -> None:
    """The goldens' main facts, read as a reader and a site generator read them."""
    h = poll_case("newspaper.rss", make_config, harness)
    fronts = front_matters(h)
    tram = fronts["Council approves the new tram line"]
    assert tram["author"] == "The Daily Example"  # the seed's author: the site
    assert tram["byline"] == "Jane Doe, John Roe"
    assert tram["headimg"].startswith("https://i.paper.example/img/media/7f3a/master/4000.jpg")
    assert "byline" not in fronts["Weather: rain by noon"]
    body = served(h, "rss")
    by_title = {e.title: e for e in feedparser.parse(body).entries}
    assert [a["name"] for a in by_title["Council approves the new tram line"].authors] == [
        "Jane Doe",
        "John Roe",
    ]
    assert by_title["Weather: rain by noon"].author == "The Daily Example"
    # (feedparser would cut this address after "exam": see parse._whole_email.)
    items = {i.findtext("title"): i for i in etree.fromstring(body).iter("item")}
    letters = items["Letters: the tram, again"]
    assert letters.findtext("author") == "letters@paper.example (Letters Editor)"

    h = poll_case("podcast.rss", make_config, harness)
    rss = feedparser.parse(served(h, "rss"))
    [episode] = [e for e in rss.entries if e.title == "Episode 12: Trams"]
    assert episode.enclosures == [
        {
            "href": "https://media.cast.example/episodes/12.mp3",
            "length": "29884416",
            "type": "audio/mpeg",
        }
    ]
    atom = feedparser.parse(served(h, "atom"))
    [two] = [e for e in atom.entries if e.title == "Episode 10: two files"]
    assert [e.href for e in two.enclosures] == [
        "https://media.cast.example/episodes/10.ogg?source=feed",
        "https://media.cast.example/transcripts/10",
    ]
    fronts = front_matters(h)
    assert fronts["Episode 12: Trams"]["enclosures"] == [
        {
            "url": "https://media.cast.example/episodes/12.mp3",
            "type": "audio/mpeg",
            "length": 29884416,
        }
    ]
    assert "enclosures" not in fronts["Episode 9: a hostile enclosure"]


def test_changing_front_matter_author_rewrites_the_articles(
    make_config: MakeConfig, harness: HarnessFactory
) -> None:
    name = "several-authors.atom"
    config = make_config([source(name)], fetch={"file_roots": [str(CASES)]})
    h = harness(config)
    h.poll()
    title = "A paper with three authors"
    assert front_matters(h)[title]["author"] == "Research Notes"
    # The same feed, the other setting: the render key changed, so the files are rewritten.
    make_config(
        [source(name)], fetch={"file_roots": [str(CASES)]}, front_matter={"author": "entry"}
    )
    h.close()
    h.reload()
    [outcome] = h.poll()
    assert outcome.updated == 3
    fronts = front_matters(h)
    assert fronts[title]["author"] == "Ada Lovelace, 李雷, Grace Hopper"
    assert fronts[title]["byline"] == fronts[title]["author"]
    assert fronts["A note signed only by an email"]["author"] == "desk@notes.example"


def test_the_parsed_cases_have_what_the_goldens_show() -> None:
    """The inputs hold what they claim to (a golden is only as good as its feed)."""
    feeds = {
        n: parse_feed(f"https://x.example/{n}", (CASES / f"{n}.xml").read_bytes()) for n in NAMES
    }
    authors = [len(e.authors) for e in feeds["several-authors.atom"].entries]
    assert authors == [3, 1, 1]
    enclosures = [len(e.enclosures) for e in feeds["podcast.rss"].entries]
    assert enclosures == [1, 1, 2, 1]
    [video] = feeds["video.atom"].entries
    assert [e.type for e in video.enclosures] == ["video/mp4", ""]


# -- publishing what a feed gave, whatever it gave ------------------------------------------

WHEN = datetime(2024, 6, 1, tzinfo=UTC)
META = FeedMeta("T", "D", "https://x.example/f", "https://x.example/", "k", WHEN)


def published(**changes: Any) -> PublishedEntry:
    values: dict[str, Any] = {
        "uid": "u1",
        "source": "s",
        "title": "T",
        "link": "https://e.example/1",
        "author": "The Site",
        "categories": ("c",),
        "tags": (),
        "headimg": "",
        "summary": "s",
        "body_html": "<p>b</p>",
        "published": WHEN,
        "updated": None,
        "date": WHEN,
    }
    values.update(changes)
    return PublishedEntry(**values)


HOSTILE_PEOPLE = (
    Person("Jane (Editor) \\ Doe\x07", "jane@paper.example", "javascript:alert(1)"),
    Person("李雷", "not an address", "https://例え.jp/people/李雷?a=b c"),
    Person("", "desk@paper.example", None),
    Person("   ", None, "https://x.example/only-a-url"),
)
HOSTILE_ENCLOSURES = (
    Enclosure("/relative/ep.mp3", "audio/mpeg", 5),
    Enclosure("https://例え.jp/エピソード 1.m4a", "", None),
    Enclosure("https://cdn.example/ep.ogg", "not a type", 0),
    Enclosure("http://localhost/ep.mp3", "audio/mpeg", 7),
    Enclosure("https://cdn.example/bell.mp3", "audio/\x07mpeg\n", 3),
)


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_hostile_authors_and_enclosures_still_give_valid_feeds(kind: str) -> None:
    entries = [
        published(uid="a", authors=HOSTILE_PEOPLE, enclosures=HOSTILE_ENCLOSURES),
        published(uid="b", authors=HOSTILE_PEOPLE[:1]),  # one author, with an email
        published(uid="c", authors=HOSTILE_PEOPLE[2:3], enclosures=HOSTILE_ENCLOSURES[2:]),
        published(uid="d", author="", authors=()),  # neither byline nor site
    ]
    body = render(kind, META, entries)  # type: ignore[arg-type]
    assert check(kind, body, "https://x.example/f") == []
    if kind != "json":
        assert feedparser.parse(body).bozo == 0


def test_rss_gets_one_author_or_creators_and_one_enclosure() -> None:
    body = render(
        "rss",
        META,
        [
            published(uid="a", authors=HOSTILE_PEOPLE, enclosures=HOSTILE_ENCLOSURES),
            published(uid="b", authors=HOSTILE_PEOPLE[:1]),
        ],
    )
    several, one = etree.fromstring(body).iter("item")
    dc = "{http://purl.org/dc/elements/1.1/}creator"
    assert [c.text for c in several.findall(dc)] == [
        "Jane (Editor) \\ Doe",
        "李雷",
        "desk@paper.example",
        "https://x.example/only-a-url",
    ]
    assert several.find("author") is None
    # The first enclosure with a web address; no length or type: 0 and one from the name.
    [enclosure] = several.findall("enclosure")
    assert {str(k): str(v) for k, v in enclosure.attrib.items()} == {
        "url": "https://xn--r8jz45g.jp/%E3%82%A8%E3%83%94%E3%82%BD%E3%83%BC%E3%83%89%201.m4a",
        "length": "0",
        "type": "audio/mp4",
    }
    assert one.findtext("author") == "jane@paper.example (Jane Editor Doe)"
    assert one.find(dc) is None


def test_atom_and_json_get_every_author_and_enclosure() -> None:
    entry = published(authors=HOSTILE_PEOPLE, enclosures=HOSTILE_ENCLOSURES)
    root = etree.fromstring(render("atom", META, [entry]))
    [atom_entry] = root.iter(f"{ATOM}entry")
    people = [
        {child.tag.removeprefix(ATOM): child.text for child in author}
        for author in atom_entry.iter(f"{ATOM}author")
    ]
    assert people == [
        {"name": "Jane (Editor) \\ Doe", "email": "jane@paper.example"},
        {"name": "李雷", "uri": "https://xn--r8jz45g.jp/people/%E6%9D%8E%E9%9B%B7?a=b%20c"},
        {"name": "desk@paper.example", "email": "desk@paper.example"},
        {"name": "https://x.example/only-a-url", "uri": "https://x.example/only-a-url"},
    ]
    links = [dict(link.attrib) for link in atom_entry.iter(f"{ATOM}link")]
    assert [link for link in links if link.get("rel") == "enclosure"] == [
        {
            "rel": "enclosure",
            "href": "https://xn--r8jz45g.jp/%E3%82%A8%E3%83%94%E3%82%BD%E3%83%BC%E3%83%89%201.m4a",
            "type": "audio/mp4",
        },
        {"rel": "enclosure", "href": "https://cdn.example/ep.ogg", "type": "audio/ogg"},
        {
            "rel": "enclosure",
            "href": "http://localhost/ep.mp3",
            "type": "audio/mpeg",
            "length": "7",
        },
        # A declared type with a control character in it is none: the extension's.
        {
            "rel": "enclosure",
            "href": "https://cdn.example/bell.mp3",
            "type": "audio/mpeg",
            "length": "3",
        },
    ]
    [item] = json.loads(render("json", META, [entry]))["items"]
    assert item["attachments"] == [
        {
            "url": "https://xn--r8jz45g.jp/%E3%82%A8%E3%83%94%E3%82%BD%E3%83%BC%E3%83%89%201.m4a",
            "mime_type": "audio/mp4",
        },
        {"url": "https://cdn.example/ep.ogg", "mime_type": "audio/ogg"},
        {"url": "http://localhost/ep.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 7},
        {"url": "https://cdn.example/bell.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 3},
    ]
    assert [a.get("url") for a in item["authors"]] == [
        None,
        "https://xn--r8jz45g.jp/people/%E6%9D%8E%E9%9B%B7?a=b%20c",
        None,
        "https://x.example/only-a-url",
    ]


# -- the checks can fail ---------------------------------------------------------------------

RSS_ITEM = (
    '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>'
    "<link>https://x.example/</link><description>d</description>"
    '<atom:link rel="self" href="https://x.example/f"/>'
    '<item><title>i</title><guid isPermaLink="false">g</guid>{}</item></channel></rss>'
)
GOOD_ENCLOSURE = '<enclosure url="https://x.example/a.mp3" length="0" type="audio/mpeg"/>'


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        (GOOD_ENCLOSURE * 2, "more than one <enclosure>"),
        ('<enclosure url="https://x.example/a.mp3" type="audio/mpeg"/>', "length None"),
        ('<enclosure url="https://x.example/a" length="-1" type="a/b"/>', "use 0 for unknown"),
        ('<enclosure url="https://x.example/a" length="1.5" type="a/b"/>', "not an integer"),
        ('<enclosure url="https://x.example/a" length="1"/>', "type None"),
        ('<enclosure url="https://x.example/a" length="1" type="mp3"/>', "not a MIME type"),
        ('<enclosure url="/a.mp3" length="1" type="a/b"/>', "not an http URL"),
        ('<enclosure url="http://localhost/a" length="1" type="a/b"/>', "not an http URL"),
        ('<enclosure url="https://x.example/a b" length="1" type="a/b"/>', "not an http URL"),
        ("<author>jo@x.example (Jo)</author><author>al@x.example (Al)</author>", "more than one"),
        ("<author>jo@x.example (Jo)</author><dc:creator>Jo</dc:creator>", "both <author>"),
        ("<author>Jo</author>", "must be an email address"),
        ("<author>jo@x.example</author>", "not 'email (Real Name)'"),
        ("<author>jo@x (Jo)</author>", "not 'email (Real Name)'"),
        ("<dc:creator> </dc:creator>", "empty dc:creator"),
    ],
)
def test_rss_checks_catch_what_the_validator_refuses(snippet: str, problem: str) -> None:
    problems = check("rss", RSS_ITEM.format(snippet).encode())
    assert any(problem in p for p in problems), problems
    assert check("rss", RSS_ITEM.format(GOOD_ENCLOSURE).encode()) == []


ATOM_ENTRY = (
    '<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:x</id><title>t</title>'
    "<updated>2024-01-01T00:00:00Z</updated><author><name>a</name></author>"
    '<link rel="self" href="https://x.example/f"/><entry><id>urn:e</id><title>e</title>'
    '<updated>2024-01-01T00:00:00Z</updated><link href="https://x.example/1"/>{}</entry></feed>'
)


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ('<link rel="enclosure" href="https://x.example/a" type="mp3"/>', "not a MIME type"),
        ('<link rel="enclosure" href="https://x.example/a" length="-1"/>', "non-negative"),
        ('<link rel="enclosure" href="https://x.example/a" length=""/>', "non-negative"),
        ('<link href="https://x.example/2"/>', "two alternate links"),  # feedgen's bug
        ("<author><email>a@x.example</email></author>", "author without a name"),
        ("<author><name>a</name><email>a at x</email></author>", "not an addr-spec"),
        ("<author><name>a</name><uri>javascript:x</uri></author>", "not an absolute URL"),
    ],
)
def test_atom_checks_catch_what_the_validator_refuses(snippet: str, problem: str) -> None:
    problems = check("atom", ATOM_ENTRY.format(snippet).encode())
    assert any(problem in p for p in problems), problems
    good = '<link rel="enclosure" href="https://x.example/a" type="audio/mpeg" length="0"/>'
    assert check("atom", ATOM_ENTRY.format(good).encode()) == []


@pytest.mark.parametrize(
    "attachment",
    [
        {"url": "https://x.example/a.mp3"},  # mime_type is required
        {"mime_type": "audio/mpeg"},  # so is url
        {"url": "https://x.example/a.mp3", "mime_type": "mp3"},
        {"url": "https://x.example/a.mp3", "mime_type": "audio/mpeg", "size_in_bytes": -1},
    ],
)
def test_json_checks_catch_bad_attachments(attachment: dict[str, Any]) -> None:
    document = json.loads(render("json", META, [published()]))
    document["items"][0]["attachments"] = [attachment]
    assert check("json", json.dumps(document).encode()) != []
    document["items"][0]["attachments"] = [{"url": "https://x.example/a", "mime_type": "a/b"}]
    assert check("json", json.dumps(document).encode()) == []


# -- the index ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite"])  # schema 3 is pre-Alembic: SQLite files only
def test_older_databases_get_the_columns_filled_from_the_raw_originals(
    make_config: MakeConfig, harness: HarnessFactory
) -> None:
    """A database of schema 3 gains authors and enclosures at open, read from raw_json
    (a pre-authors raw original names one author as "author"), so that feeds and
    ?author= are right at once, before any poll or rebuild."""
    h = poll_case("podcast.rss", make_config, harness)
    database = h.config.settings.database
    h.close()
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT uid, raw_json FROM entries ORDER BY uid").fetchall()
        db.execute("ALTER TABLE entries DROP COLUMN authors")
        db.execute("ALTER TABLE entries DROP COLUMN enclosures")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        db.execute("DROP TABLE alembic_version")  # schema 3 was made before Alembic
        db.execute("DROP TABLE outbox")  # and before the outbox
        db.execute("DROP TABLE jobs")  # and the jobs
        # One entry as an older version stored it: one author string, no enclosures key.
        uid, raw = rows[0]
        old = json.loads(raw)
        old.pop("enclosures", None)
        old.pop("authors", None)
        old["author"] = "Old Style Host"
        db.execute("UPDATE entries SET raw_json = ? WHERE uid = ?", (json.dumps(old), uid))
    h.reload()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "4",
        )
    stored = {e.uid: e for _, e in h.store.published(limit=10)}
    assert stored[uid].authors == (Person("Old Style Host"),)
    assert stored[uid].enclosures == ()
    episode = next(e for e in stored.values() if e.title == "Episode 12: Trams")
    assert episode.enclosures == (
        Enclosure("https://media.cast.example/episodes/12.mp3", "audio/mpeg", 29884416),
    )
    assert episode.authors == ()
    client = create_app(h.config, h.store).test_client()
    document = client.get("/feeds/all.json?author=old+style").get_json()
    assert [i["title"] for i in document["items"]] == [stored[uid].title]
