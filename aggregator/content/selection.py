"""Which entries a republished feed shows: a level of the category tree, or a named output.

Pure: no I/O and no framework. A feed name becomes a ``Selection`` (``None``: there is
no such feed, which the web answers with a 404 and a command reports in its own words),
and a selection picks, from the stored entries of its categories and sources (read
newest first, in pages, by the caller), those that carry its tags, pass its rules and
match the request's query. The web serves feeds with it; the rule dry run can ask it
what an output keeps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from aggregator.config import Config
from aggregator.content.filter import Filterable, Query, Rule, in_selection, verdict

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
