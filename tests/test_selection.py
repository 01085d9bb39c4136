"""Feed selection from tables: which feed a name means (None: no such feed), and which
entries it shows. Pure: no store, no app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aggregator.config import Config
from aggregator.content.filter import Query, Rule
from aggregator.content.selection import (
    PAGE,
    Selection,
    category_selection,
    output_selection,
    pick,
)
from aggregator.models import PublishedEntry

CONFIG = Config.model_validate(
    {
        "settings": {"publish": {"title": "Feeds", "description": "Mine"}},
        "sources": [
            {"url": "https://a.example/feed", "categories": ["金融", "新浪财经"], "name": "sina"},
            {"url": "https://b.example/feed", "categories": ["Tech"], "name": "blog"},
        ],
        "outputs": [
            {"name": "python", "title": "Python posts", "tags": ["python"], "limit": 2},
            {
                "name": "cn",
                "categories": [["金融"]],
                "sources": ["blog"],
                "rules": [{"block": "朱镕基", "field": "title"}],
            },
        ],
    }
)
ENTRY = PublishedEntry(
    uid="u",
    source="blog",
    title="A title",
    link="https://b.example/1",
    author="Ann",
    categories=("Tech",),
    tags=("Python",),
    headimg="",
    summary="",
    body_html="<p>Body</p>",
    published=None,
    updated=None,
    date=datetime(2024, 1, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("path", "key", "title", "description", "categories"),
    [
        ("all", "all", "Feeds: all", "Mine", ()),
        ("金融", "category:金融", "Feeds: 金融", "Mine — 金融", (("金融",),)),
        (
            "金融/新浪财经",
            "category:金融/新浪财经",
            "Feeds: 金融 › 新浪财经",
            "Mine — 金融 › 新浪财经",
            (("金融", "新浪财经"),),
        ),
        ("Tech", "category:Tech", "Feeds: Tech", "Mine — Tech", (("Tech",),)),
    ],
)
def test_category_selection(
    path: str,
    key: str,
    title: str,
    description: str,
    categories: tuple[tuple[str, ...], ...],
) -> None:
    expected = Selection(key, title, description, "/", categories=categories)
    assert category_selection(CONFIG, path) == expected
    assert category_selection(CONFIG, path, frozenset(CONFIG.categories())) == expected


@pytest.mark.parametrize(
    "path", ["新浪财经", "金融/新浪", "金融/新浪财经/more", "tech", "Tech/", "", "All"]
)
def test_no_such_category_is_none(path: str) -> None:
    assert category_selection(CONFIG, path) is None


def test_the_tree_given_is_the_one_asked() -> None:
    assert category_selection(CONFIG, "Elsewhere", {("Elsewhere",)}) is not None
    assert category_selection(CONFIG, "Tech", set()) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "python",
            Selection("output:python", "Python posts", "Mine", "/", tags=("python",), limit=2),
        ),
        (
            "cn",
            Selection(
                "output:cn",
                "Feeds: cn",
                "Mine",
                "/",
                categories=(("金融",),),
                sources=("blog",),
                rules=(Rule("block", "朱镕基", "title"),),
            ),
        ),
        ("nope", None),
        ("Python", None),
    ],
)
def test_output_selection(name: str, expected: Selection | None) -> None:
    assert output_selection(CONFIG, name) == expected


@pytest.mark.parametrize(
    ("selection", "entry", "admitted"),
    [
        (Selection("s", "t", "d", "/"), ENTRY, True),
        (Selection("s", "t", "d", "/", tags=("python",)), ENTRY, True),  # folded
        (Selection("s", "t", "d", "/", tags=("ＰＹＴＨＯＮ", "go")), ENTRY, True),  # NFKC
        (Selection("s", "t", "d", "/", tags=("go",)), ENTRY, False),
        (Selection("s", "t", "d", "/", tags=("python",)), replace(ENTRY, tags=()), False),
        (Selection("s", "t", "d", "/", rules=(Rule("block", "title"),)), ENTRY, False),
        (Selection("s", "t", "d", "/", rules=(Rule("block", "other"),)), ENTRY, True),
        (Selection("s", "t", "d", "/", rules=(Rule("keep", "other"),)), ENTRY, False),
        (Selection("s", "t", "d", "/", rules=(Rule("keep", "ann", "author"),)), ENTRY, True),
        (
            Selection("s", "t", "d", "/", tags=("go",), rules=(Rule("keep", "title"),)),
            ENTRY,
            False,
        ),
    ],
)
def test_admits(selection: Selection, entry: PublishedEntry, admitted: bool) -> None:
    assert selection.admits(entry) is admitted


@pytest.mark.parametrize(
    ("selection", "query", "size"),
    [
        (Selection("s", "t", "d", "/"), Query(limit=7), 7),  # nothing dropped after reading
        (Selection("s", "t", "d", "/", sources=("a",)), Query(limit=7), 7),  # done in SQL
        (Selection("s", "t", "d", "/", tags=("x",)), Query(limit=7), PAGE),
        (Selection("s", "t", "d", "/", rules=(Rule("block", "x"),)), Query(limit=7), PAGE),
        (Selection("s", "t", "d", "/"), Query(q="x", limit=7), PAGE),
        (Selection("s", "t", "d", "/"), Query(exclude="x", limit=7), PAGE),
        (Selection("s", "t", "d", "/"), Query(author="x", limit=7), PAGE),
        (Selection("s", "t", "d", "/"), Query(since=ENTRY.date, limit=7), 7),  # done in SQL
    ],
)
def test_page_size(selection: Selection, query: Query, size: int) -> None:
    assert selection.page_size(query) == size


def entries(*titles: str) -> list[PublishedEntry]:
    return [replace(ENTRY, uid=t, title=t) for t in titles]


@pytest.mark.parametrize(
    ("selection", "query", "picked"),
    [
        (Selection("s", "t", "d", "/"), Query(limit=2), ["a1", "b2"]),
        (Selection("s", "t", "d", "/", limit=1), Query(limit=3), ["a1"]),  # the output's cap
        (Selection("s", "t", "d", "/", limit=5), Query(limit=3), ["a1", "b2", "a3"]),
        (Selection("s", "t", "d", "/"), Query(q="a", limit=9), ["a1", "a3", "a4"]),
        (Selection("s", "t", "d", "/"), Query(exclude="a", limit=9), ["b2"]),
        (
            Selection("s", "t", "d", "/", rules=(Rule("block", "3"),)),
            Query(q="a", limit=9),
            ["a1", "a4"],
        ),
        (Selection("s", "t", "d", "/", tags=("go",)), Query(limit=9), []),
    ],
)
def test_pick_keeps_the_order_and_the_smaller_limit(
    selection: Selection, query: Query, picked: list[str]
) -> None:
    assert [e.title for e in pick(selection, query, entries("a1", "b2", "a3", "a4"))] == picked


def test_pick_reads_no_more_than_it_needs() -> None:
    read: list[str] = []

    def candidates() -> Iterator[PublishedEntry]:
        for entry in entries("a1", "b2", "a3", "a4"):
            read.append(entry.title)
            yield entry

    assert [e.title for e in pick(Selection("s", "t", "d", "/"), Query(limit=2), candidates())] == [
        "a1",
        "b2",
    ]
    assert read == ["a1", "b2"]  # a store page is read only when still needed
