"""Which entries a republished feed shows: a level of the category tree, or a named output.

Pure: no I/O and no framework. A feed name becomes a ``Selection`` (``None``: there is
no such feed, which the web answers with a 404 and a command reports in its own words),
and a selection picks, from the stored entries of its categories and sources (read
newest first, in pages, by the caller), those that carry its tags, pass its rules and
match the request's query. The web serves feeds with it; the rule dry run can ask it
what an output keeps; the static feeds (``store/static.py``) list every feed with
``static_feeds`` and build each document's facts with ``feed_meta``, as the web does, so
one URL gets the same bytes from both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import quote

from aggregator.config import Config
from aggregator.content.convert import safe_segment
from aggregator.content.filter import Filterable, Query, Rule, in_selection, verdict
from aggregator.content.publish import FeedMeta

# What a file name cannot hold on some file system (Windows is the strictest), or what a
# static web server would not map back to it.
_FILE_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f-\x9f]|^[.\s-]|[.\s]$')
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.I)
PAGE = 200  # rows read per query while filters drop entries
ALL = "all"  # the feed of every entry: /feeds/all.<format>
E = TypeVar("E", bound=Filterable)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries a feed shows."""

    key: str  # identifies the feed (cache key, feed id)
    title: str
    description: str
    home: str  # path of its dashboard page
    categories: tuple[tuple[str, ...], ...] = ()  # read from the store: any of these levels
    sources: tuple[str, ...] = ()  # read from the store: any of these sources
    tags: tuple[str, ...] = ()  # kept after reading: entries with one of these tags
    rules: tuple[Rule, ...] = ()  # kept after reading: entries these rules keep
    limit: int | None = None  # the output's own cap

    def admits(self, entry: Filterable) -> bool:
        """True when an entry of the selection's categories and sources belongs in it:
        it has one of the tags, and the rules keep it."""
        if not in_selection(entry, self.tags):
            return False
        return not self.rules or verdict(self.rules, entry) is None

    def page_size(self, query: Query) -> int:
        """Rows to read per store query: all that are wanted at once, unless filters
        applied after reading may drop some (then pages until enough are found)."""
        filtered = self.tags or self.rules or query.q or query.exclude or query.author
        return PAGE if filtered else query.limit


def category_selection(
    config: Config, path: str, tree: Collection[tuple[str, ...]] | None = None
) -> Selection | None:
    """The selection of a level of the category tree (``all``: every entry).

    Args:
        path: the levels joined by "/", e.g. "金融/新浪财经".
        tree: ``config.categories()``, when the caller keeps it (it walks every source).

    Returns:
        None when no source is filed under that level.
    """
    settings = config.settings.publish
    if path == ALL:
        return Selection(ALL, f"{settings.title}: all", settings.description, "/")
    levels = tuple(path.split("/"))
    if levels not in (config.categories() if tree is None else tree):
        return None
    return Selection(
        f"category:{path}",
        f"{settings.title}: {' › '.join(levels)}",
        f"{settings.description} — {' › '.join(levels)}",
        "/",
        categories=(levels,),
    )


def output_selection(config: Config, name: str) -> Selection | None:
    """The selection of a named output from the config; None when there is none."""
    output = config.output(name)
    if output is None:
        return None
    settings = config.settings.publish
    return Selection(
        f"output:{name}",
        output.title or f"{settings.title}: {name}",
        output.description or settings.description,
        "/",
        categories=output.categories,
        sources=output.sources,
        tags=output.tags,
        rules=tuple(r.rule() for r in output.rules),
        limit=output.limit,
    )


def pick(selection: Selection, query: Query, candidates: Iterable[E]) -> list[E]:
    """The entries a feed shows, in the order given (newest first).

    Args:
        candidates: the stored entries of the selection's categories and sources since
            the query's date; read lazily, so no more pages are read than needed.
    """
    limit = min(query.limit, selection.limit or query.limit)
    found: list[E] = []
    for entry in candidates:
        if selection.admits(entry) and query.matches(entry):
            found.append(entry)
            if len(found) >= limit:
                break
    return found


def feed_meta(
    selection: Selection, *, base: str, path: str, generated: datetime, query: str = ""
) -> FeedMeta:
    """The feed-level facts of a selection's document served at ``base`` + ``path``.

    The one place the self link is made: the web app and the static files both call it,
    so a document has the same bytes wherever it is written for one URL.

    Args:
        base: the absolute URL self links start with, ending in "/".
        path: the document's path under it, unquoted (e.g. "feeds/金融.rss").
        generated: the updated time of an empty feed.
        query: the canonical query string of a filtered feed ("" or "?…").
    """
    return FeedMeta(
        title=selection.title,
        description=selection.description,
        feed_url=base + quote(path.lstrip("/")) + query,
        home_url=base.rstrip("/") + selection.home,
        key=selection.key,
        generated=generated,
    )


@dataclass(frozen=True, slots=True)
class StaticFeed:
    """One feed written as static files: ``<path>.rss``, ``.atom`` and ``.json``."""

    path: str  # relative to the folder, without the format's ending, e.g. "feeds/金融"
    label: str  # what the index page calls it
    selection: Selection


def file_segment(name: str) -> str:
    """A name as a file's or folder's name: itself, spaces and CJK included, when every
    file system takes it (so the static file's path is the web app's URL path), else
    ``convert.safe_segment`` of it (e.g. "a:b" → "a-b", ".." → "untitled")."""
    text = unicodedata.normalize("NFC", name)
    if (
        text == name
        and not _FILE_UNSAFE.search(text)
        and not _DEVICE.match(text)
        and len(text.encode("utf-8")) <= 100
    ):
        return text
    return safe_segment(name, 100, "untitled")


def static_feeds(config: Config) -> tuple[list[StaticFeed], list[str]]:
    """Every feed the web app serves, with the path of its static files.

    The paths are the web app's URL paths: ``feeds/all``, ``feeds/<section>[/<site>
    [/<feed>]]`` and ``outputs/<name>``, unquoted; only a name some file system would
    refuse (``file_segment``: "a:b", "..", "CON") is changed, as article folders are.
    Two feeds whose paths would be one file (also on a case-insensitive file system)
    cannot both be written: the first is kept.

    Returns:
        The feeds, and a line for each one left out.
    """
    tree = config.categories()
    candidates: list[tuple[str, str, Selection | None]] = [
        ("feeds/" + ALL, "All", category_selection(config, ALL, tree))
    ]
    for levels in sorted(tree):
        path = "/".join(levels)
        if path == ALL:
            continue  # the web serves /feeds/all as the feed of every entry, not this
        candidates.append(
            (
                "feeds/" + "/".join(map(file_segment, levels)),
                " › ".join(levels),
                category_selection(config, path, tree),
            )
        )
    for output in config.outputs:
        candidates.append(
            (
                "outputs/" + file_segment(output.name),
                output.title or output.name,
                output_selection(config, output.name),
            )
        )
    feeds: list[StaticFeed] = []
    taken: dict[str, str] = {}
    left_out: list[str] = []
    for path, label, selection in candidates:
        if selection is None:
            continue
        fold = path.casefold()
        if fold in taken:
            left_out.append(
                f"{label!r} is not written: its files would be those of {taken[fold]!r}"
            )
            continue
        taken[fold] = label
        feeds.append(StaticFeed(path, label, selection))
    return feeds, left_out
