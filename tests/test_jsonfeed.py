"""JSON Feed sources: which documents are read as JSON, hostile JSON, and the whole path
from a JSON Feed served over HTTP to article files. Field by field reading is in the parse
goldens (tests/data/parse/jsonfeed-*.feed.json)."""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

import pytest
import yaml
from conftest import DATA, HarnessFactory, MakeConfig
from pytest_httpserver import HTTPServer

from aggregator.content.parse import parse_feed
from aggregator.errors import ParseError
from aggregator.web import create_app

V11 = "https://jsonfeed.org/version/1.1"


def document(items: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"version": V11, "title": "J", **fields}
    if items is not None:
        data["items"] = items
    return data


ONE = document([{"id": "1", "title": "Über", "content_text": "Text"}])


# -- which documents are JSON ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps(ONE).encode(), None),
        (b" \r\n\t" + json.dumps(ONE).encode(), "text/plain"),
        (codecs.BOM_UTF8 + json.dumps(ONE).encode(), "application/feed+json"),
        (json.dumps(ONE, ensure_ascii=False).encode("utf-16"), None),  # with its BOM
        (json.dumps(ONE, ensure_ascii=False).encode("utf-16-le"), None),
        (json.dumps(ONE, ensure_ascii=False).encode("utf-32-be"), "application/json"),
        (json.dumps(ONE, indent=2).encode(), "application/json; charset=utf-8"),
    ],
    ids=["bare", "whitespace", "utf-8 bom", "utf-16 bom", "utf-16-le", "utf-32-be", "indented"],
)
def test_json_feed_is_read_however_it_is_encoded(body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    feed = parse_feed("https://j.example/feed.json", body, headers)
    assert feed.title == "J"
    assert [(e.guid, e.title, e.content_html) for e in feed.entries] == [
        ("1", "Über", "<p>Text</p>")
    ]


def test_xml_served_as_json_is_still_read_as_xml() -> None:
    body = (
        b'<rss version="2.0"><channel><title>X</title><item><guid>x1</guid></item></channel></rss>'
    )
    feed = parse_feed("u", body, {"Content-Type": "application/json"})
    assert (feed.title, [e.guid for e in feed.entries]) == ("X", ["x1"])


def test_a_json_content_type_makes_a_non_json_body_a_json_error() -> None:
    with pytest.raises(ParseError, match=r"not a usable feed \(JSON: "):
        parse_feed("u", b"version: 1.1\nitems: []", {"Content-Type": "application/feed+json"})


# -- hostile JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', r"JSON: Expecting value"),
        (b'{"title": "x"} trailing', r"JSON: Extra data"),
        (b"[" * 100_000 + b"]" * 100_000, r"JSON nested too deep"),
        (b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"JSON nested too deep"),
        (json.dumps([ONE]).encode(), r"a JSON array, not an object"),
        (b'"just a string"', r"a JSON string, not an object"),
        (b'{"title": "An API answer", "data": []}', r"no JSON Feed version or items"),
        (b'{"version": 1.1, "items": {"id": 1}}', r"no JSON Feed version or items"),
    ],
    ids=[
        "truncated",
        "trailing",
        "nested",
        "nested-items",
        "list",
        "string",
        "not a feed",
        "bad types",
    ],
)
def test_what_is_not_a_json_feed_is_a_clear_parse_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_feed("https://j.example/feed.json", body, {"Content-Type": "application/json"})


def test_a_json_feed_without_items_is_a_feed_with_none_and_a_warning() -> None:
    feed = parse_feed("u", json.dumps(document(None)).encode())
    assert (feed.title, feed.entries) == ("J", ())
    assert feed.warning == "JSON Feed without an items list: no entries"


def test_items_without_a_known_version_are_read_with_a_warning() -> None:
    feed = parse_feed("u", json.dumps({"version": "2.0", "items": [{"id": 1}]}).encode())
    assert [e.guid for e in feed.entries] == ["1"]
    assert feed.warning == "JSON Feed version 2.0: read as 1.1"


def test_absurd_numbers_and_deep_values_inside_an_item_never_stop_the_feed() -> None:
    deep: Any = "bottom"
    for _ in range(200):  # deep, yet within what the JSON reader takes
        deep = {"x": [deep]}
    items = [
        {"id": "@ID@", "content_text": "long id"},
        {"id": "ok", "title": deep, "tags": [deep], "authors": [deep], "attachments": [deep]},
    ]
    # An id written as a 5000-digit number: more than Python converts to an int.
    body = json.dumps(document(items)).replace('"@ID@"', "9" * 5000).encode()
    feed = parse_feed("u", body)
    assert [e.content_html for e in feed.entries] == ["<p>long id</p>", ""]
    assert feed.entries[0].guid == "9" * 5000  # a 5000-digit number, kept as its digits
    assert feed.entries[1].guid == "ok"


def test_item_authors_fall_back_to_the_feeds_in_both_versions() -> None:
    v11 = document([{"id": "a"}, {"id": "b", "authors": [{"name": "Own"}]}])
    v11["authors"] = [{"name": "Feed"}]
    v10: dict[str, Any] = {"version": "https://jsonfeed.org/version/1", "title": "J"}
    v10["author"] = {"name": "Feed"}
    v10["items"] = [{"id": "a"}, {"id": "b", "author": {"name": "Own"}}]
    for data in (v11, v10):
        feed = parse_feed("u", json.dumps(data).encode())
        assert [[p.name for p in e.authors] for e in feed.entries] == [["Feed"], ["Own"]]


def test_relative_urls_resolve_against_the_document_else_the_feed_url() -> None:
    data = document(
        [{"id": "a", "url": "posts/a", "image": "/i.png"}],
        feed_url="https://own.example/blog/feed.json",
    )
    body = json.dumps(data).encode()
    fetched = parse_feed("https://cdn.example/feeds/blog.json", body).entries[0]
    assert (fetched.link, fetched.images) == (
        "https://cdn.example/feeds/posts/a",
        ("https://cdn.example/i.png",),
    )
    assert fetched.content_base == "https://cdn.example/feeds/blog.json"
    local = parse_feed("/srv/feeds/blog.json", body).entries[0]  # a local file: no web base
    assert (local.link, local.images) == (
        "https://own.example/blog/posts/a",
        ("https://own.example/i.png",),
    )
    assert local.content_base == "https://own.example/blog/feed.json"


# -- the whole path ----------------------------------------------------------------------


def test_json_feed_served_over_http_becomes_articles(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    body = (DATA / "parse" / "jsonfeed-1.1.feed.json").read_bytes()
    httpserver.expect_request("/feed.json").respond_with_data(
        body, content_type="application/feed+json"
    )
    url = httpserver.url_for("/feed.json")
    h = harness(make_config([{"url": url, "categories": ["Notes"], "name": "notes"}]))
    [outcome] = h.poll()
    assert (outcome.ok, outcome.new, outcome.failed, outcome.error) == (True, 3, 0, None)
    articles = {}
    for path in h.files():
        match = re.match(r"^---\n(.*?)\n---\n(.*)$", path.read_text(encoding="utf-8"), re.S)
        assert match is not None
        front = yaml.safe_load(match.group(1))
        articles[front["title"]] = (front, match.group(2))
    assert sorted(articles) == ["A link to elsewhere", "Birds at dawn", "Plain text only"]
    front, text = articles["Birds at dawn"]
    assert front["headimg"] == "https://notes.example/img/robin-large.jpg"
    assert front["tags"] == ["birds", "dawn"]
    assert "a robin" in text
    _, text = articles["Plain text only"]
    assert "&lt;b&gt;angle brackets&lt;/b&gt;" in text  # text stays text
    assert "<b>" not in text
    # Republished: the items come back out of our own JSON Feed.
    response = create_app(h.config, h.store).test_client().get("/feeds/Notes.json")
    assert response.status_code == 200
    out = {i["title"]: i for i in json.loads(response.data)["items"]}
    assert sorted(out) == sorted(articles)
    assert out["Birds at dawn"]["url"] == "https://notes.example/2024/birds"
    assert out["A link to elsewhere"]["url"] == "https://elsewhere.example/story"
    # A second poll of the same document writes nothing.
    before = {p: p.stat().st_mtime_ns for p in h.files()}
    [again] = h.poll()
    assert again.ok
    assert {p: p.stat().st_mtime_ns for p in h.files()} == before


FIELDS = [
    *("id", "url", "external_url", "title", "content_html", "content_text", "summary"),
    *("image", "banner_image", "date_published", "date_modified", "authors", "author"),
    *("tags", "attachments"),
]
WRONG: list[Any] = [None, True, 0, -1, 1e300, "", " ", "http://[::1", [], {}, [None], [[]]]
WRONG += [{"name": []}, [{"url": {}}], [{"url": "http://[::1", "size_in_bytes": True}]]
WRONG += ["0001-01-01T00:00:00+23:59", "2024-02-30T00:00:00Z", "T", "Mon, 99 Foo 2024"]


@pytest.mark.parametrize("field", FIELDS)
def test_a_wrong_value_in_any_item_field_never_stops_its_feed(field: str) -> None:
    """Every field set to every wrong shape, one item each: each item is read (as if the
    field were absent) or skipped, and the good item after them always is."""
    items = [{"id": f"bad{n}", field: value} for n, value in enumerate(WRONG)]
    items.append({"id": "good", "title": "Good", "content_html": "<p>Good</p>"})
    feed = parse_feed("https://j.example/feed.json", json.dumps(document(items)).encode())
    assert feed.entries[-1].title == "Good"
    assert len(feed.entries) + len(feed.skipped) == len(items)


@pytest.mark.parametrize("field", ["title", "home_page_url", "feed_url", "authors", "author"])
def test_a_wrong_value_in_any_feed_field_never_stops_the_feed(field: str) -> None:
    for value in WRONG:
        data = document([{"id": "good", "title": "Good"}], **{field: value})
        feed = parse_feed("/local/feed.json", json.dumps(data).encode())
        assert [e.title for e in feed.entries] == ["Good"]
