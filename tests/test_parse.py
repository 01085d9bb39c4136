"""Parsing, golden files: tests/data/parse/NAME.xml (RSS, Atom) or NAME.feed.json (JSON
Feed) must parse to NAME.json.

A golden is the ``ParsedFeed`` that ``parse_feed`` returns, as readable JSON. After a
deliberate change to parsing, ``AGGREGATOR_REGOLD=1`` rewrites the goldens from the code;
then read the diff: a golden that records a bug is worse than none.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from urllib.parse import urljoin

import pytest
from conftest import DATA

from aggregator.content.parse import parse_feed
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed

CASES = DATA / "parse"
INPUTS = (".xml", ".feed.json")  # a document to parse; NAME.json is its golden
FILES = sorted(p.name for p in CASES.iterdir() if p.name.endswith(INPUTS))
REGOLD = os.environ.get("AGGREGATOR_REGOLD") == "1"


def to_json(feed: ParsedFeed) -> str:
    """The golden's text: sorted keys, indented, characters as they are, ISO dates."""

    def encode(value: object) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"not JSON: {value!r}")

    data = asdict(feed)
    return json.dumps(data, default=encode, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def golden_name(file: str) -> str:
    """NAME.json for NAME.xml and NAME.feed.json."""
    for suffix in INPUTS:
        file = file.removesuffix(suffix)
    return f"{file}.json"


@pytest.mark.parametrize("file", FILES)
def test_parse(file: str) -> None:
    body = (CASES / file).read_bytes()
    actual = to_json(parse_feed(f"https://feeds.example/{file}", body))
    golden = CASES / golden_name(file)
    if REGOLD:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_every_input_has_its_golden_and_every_golden_its_input() -> None:
    """Runs after the cases, so a regold run writes the goldens before this checks them."""
    assert FILES
    goldens = {p.name for p in CASES.glob("*.json") if not p.name.endswith(INPUTS)}
    assert goldens == {golden_name(f) for f in FILES}
    assert len(goldens) == len(FILES)  # no NAME.xml beside a NAME.feed.json


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # RSS: markup (escaped or in CDATA) is dropped, scripts and styles with their text.
        ("<![CDATA[<b>Bold</b> news<script>alert(1)</script><style>b{}</style>]]>", "Bold news"),
        ("&lt;i&gt;Escaped&lt;/i&gt;&lt;script&gt;x()&lt;/script&gt; too", "Escaped too"),
        ("<![CDATA[<b>Cut</b> <script>never closed]]>", "Cut"),
        # No end tag: the words are the title.
        ("Plain &lt;script&gt; talk", "Plain <script> talk"),
        ("Fish &amp; chips", "Fish & chips"),
    ],
)
def test_rss_titles_with_markup_keep_no_script_or_style(title: str, expected: str) -> None:
    body = (
        '<rss version="2.0"><channel><title>t</title><item><guid isPermaLink="false">1</guid>'
        f"<title>{title}</title></item></channel></rss>"
    ).encode()
    [entry] = parse_feed("https://feeds.example/t.xml", body).entries
    assert entry.title.strip() == expected


@pytest.mark.parametrize(
    ("kind", "title", "expected"),
    [
        ("html", "&lt;em&gt;A&lt;/em&gt;&lt;script&gt;x()&lt;/script&gt; B", "A B"),
        ("html", "&lt;style&gt;p{}&lt;/style&gt;C &amp;amp; D", "C & D"),
        ("xhtml", '<div xmlns="http://www.w3.org/1999/xhtml">E<script>y()</script></div>', "E"),
        # A text title is what it says, angle brackets and all.
        ("text", "Why &lt;script&gt; &lt;/script&gt; matters", "Why <script> </script> matters"),
    ],
)
def test_atom_titles_follow_their_type(kind: str, title: str, expected: str) -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>1</id>'
        f'<title type="{kind}">{title}</title></entry></feed>'
    ).encode()
    [entry] = parse_feed("https://feeds.example/t.xml", body).entries
    assert entry.title == expected


RELATIVE = b"""<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>
<title>t</title><item><guid isPermaLink="false">1</guid><link>p/1.html</link>
<description>&lt;a href="x.html"&gt;x&lt;/a&gt;</description>
<enclosure url="media/1.mp3" type="audio/mpeg" length="1"/>
<media:thumbnail url="/thumbs/1.jpg"/><media:content url="../big/1.jpg" medium="image"/>
<media:content url="https://cdn.example/2.jpg" medium="image"/>
</item></channel></rss>"""


@pytest.mark.parametrize(
    ("headers", "base"),
    [
        ({}, "https://feeds.example/dir/feed.xml"),
        ({"Content-Location": "/other/all.xml"}, "https://feeds.example/other/all.xml"),
        ({"content-location": "https://elsewhere.example/x/"}, "https://elsewhere.example/x/"),
    ],
)
def test_relative_urls_have_the_documents_base(headers: dict[str, str], base: str) -> None:
    """The base is the Content-Location (relative to the URL), else the URL; feedparser
    resolves links itself, and we resolve media and RSS enclosure URLs the same way."""
    [entry] = parse_feed("https://feeds.example/dir/feed.xml", RELATIVE, headers).entries
    assert entry.content_base == entry.summary_base == base
    assert entry.link == urljoin(base, "p/1.html")
    assert entry.images == (
        urljoin(base, "/thumbs/1.jpg"),
        urljoin(base, "../big/1.jpg"),
        "https://cdn.example/2.jpg",
    )
    assert [e.url for e in entry.enclosures] == [urljoin(base, "media/1.mp3")]


def test_a_local_file_leaves_relative_urls_alone() -> None:
    [entry] = parse_feed("/srv/feeds/feed.xml", RELATIVE).entries
    assert entry.enclosures[0].url == "media/1.mp3"
    assert entry.images[0] == "/thumbs/1.jpg"


# -- known bugs (feedparser's readings that content/parse.py does not yet correct) -----


@pytest.mark.xfail(
    strict=True,
    reason='feedparser resolves a guid without isPermaLink="false" against the feed\'s URL '
    "and makes it the link: the entry's identity changes when the feed is fetched from "
    "another URL (a redirect, http to https), so every such entry is stored again",
)
def test_a_bare_guid_does_not_depend_on_the_feed_url() -> None:
    body = b'<rss version="2.0"><channel><title>t</title><item><guid>12345</guid></item></channel></rss>'
    before = parse_feed("http://a.example/feed", body).entries[0]
    after = parse_feed("https://cdn.example/feed", body).entries[0]
    assert before.guid == after.guid == "12345"
    assert before.link is None


@pytest.mark.xfail(
    strict=True,
    reason="feedparser reads only the year of '2024/01/08 09:15' or '2024年1月8日 09:15' and "
    "fills in the current month and day 1: a wrong date that depends on the clock",
)
@pytest.mark.parametrize("written", ["2024/01/08 09:15", "2024年1月8日 09:15"])
def test_a_date_read_only_in_part_is_not_trusted(written: str) -> None:
    body = (
        '<rss version="2.0"><channel><title>t</title><item><guid isPermaLink="false">d</guid>'
        f"<pubDate>{written}</pubDate></item></channel></rss>"
    ).encode()
    [entry] = parse_feed("https://feeds.example/d.xml", body).entries
    assert entry.published in (None, datetime(2024, 1, 8, 9, 15, tzinfo=UTC))


# -- documents cut short --------------------------------------------------------------

CUT = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0">\n<channel><title>T</title>\n'
    '<item><title>Whole</title><guid isPermaLink="false">w1</guid><description>Kept.'
    "</description></item>"
)


@pytest.mark.parametrize(
    "tail",
    ["</channel></rss", "\n</channel>\n</rss", "</channel>", "\n</channel>\n", "", "\n", "<"],
)
def test_a_document_cut_after_its_last_entry_keeps_it(tail: str) -> None:
    feed = parse_feed("https://cut.example/feed", (CUT + tail).encode())
    assert [e.title for e in feed.entries] == ["Whole"]
    assert feed.skipped == ()
    assert feed.warning is not None  # the document is still not well-formed, and says so


@pytest.mark.parametrize(
    "tail", ["<item>", "<item><title>Half", '<atom:entry xmlns:atom="http://www.w3.org/2005/Atom">']
)
def test_a_document_cut_inside_an_entry_drops_that_entry_only(tail: str) -> None:
    feed = parse_feed("https://cut.example/feed", (CUT + tail).encode())
    assert [e.title for e in feed.entries] == ["Whole"]
    assert feed.skipped == ("entry 2: dropped, the document is cut short",)


def test_a_channel_without_entries_and_with_an_undefined_entity_is_a_feed() -> None:
    body = b'<rss version="2.0"><channel><title>Caf&eacute;</title></channel></rss>'
    feed = parse_feed("https://new.example/feed", body)
    assert (feed.title, feed.entries) == ("Café", ())
    assert feed.warning is not None
    assert "undefined entity" in feed.warning


def test_a_document_that_is_no_feed_is_still_refused() -> None:
    with pytest.raises(ParseError, match="not a usable feed"):
        parse_feed("https://x.example/page", b"<html><body>&nbsp;<p>Not a feed</p></body></html>")


@pytest.mark.xfail(
    strict=True,
    reason="feedparser cuts an author's email after four letters of its top-level domain "
    '("desk@paper.example" becomes "desk@paper.exam", the name "ple"); parse mends the '
    "last author element of an entry from its text, which feedparser keeps, but not the "
    "ones before it, whose text is lost",
)
def test_every_author_email_is_whole() -> None:
    body = (
        b'<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t'
        b'</title><item><guid isPermaLink="false">a</guid><author>desk@paper.example</author>'
        b"<dc:creator>Jo</dc:creator></item></channel></rss>"
    )
    [entry] = parse_feed("https://feeds.example/a.xml", body).entries
    assert [(p.name, p.email) for p in entry.authors] == [("", "desk@paper.example"), ("Jo", None)]
