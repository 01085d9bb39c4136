"""The dashboard's source list, paged, filtered, sorted and counted in SQL.

Everything the overview lists is a column of the index's ``sources`` table: the state
that polls write, and the configuration's side that ``Catalog.sync_sources`` writes at
start and on reload (``position`` in config order, ``enabled``, the category path and
label, the redacted URL, a lowercased search text). The listed sources are the rows
with a ``position``; rows of removed sources keep their state and articles but have
none. So each page, filter and count is one SQL statement along an index
(``schema.py``): no per-request loop over the sources, nothing held per connection,
and a reload is in force as soon as its sync commits.

The statements are SQLAlchemy Core and compile for PostgreSQL too; orderings say where
NULLs go (``nulls_last``), which SQLite and PostgreSQL default differently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aggregator.store.queries import chunks
from aggregator.store.schema import CATEGORY_SEPARATOR, entries_table, kept, sources_table

#: The states a visitor can filter by: the recorded ones, "new" (never polled) and
#: "disabled" (``enabled: false`` in the config).
STATES = ("new", "ok", "erroring", "paused", "gone", "disabled")

#: ``?sort=`` values and what they order by (then by config position, for a stable page).
SORTS = ("config", "name", "state", "last_poll", "next_poll", "failures")

PROBLEMS = ("erroring", "paused", "gone")


@dataclass(frozen=True, slots=True)
class Filters:
    """What the visitor asked for: ``?state=``, ``?category=``, ``?q=``, ``?sort=``."""

    state: str = ""  # one of STATES, or "" for every state; "problems": erroring, paused, gone
    category: tuple[str, ...] = ()  # this category and every one below it
    search: str = ""  # in the name, the URL (redacted unless reveal) and the feed's title
    sort: str = "config"
    descending: bool = False
    reveal: bool = False  # the admin: search the URLs in full
    name: str | None = None  # this one source only (its own page)


@dataclass(frozen=True, slots=True)
class SourcePage:
    """One page of the source list, and the counts around it."""

    rows: list[dict[str, Any]]
    matching: int  # sources the filters match (every page)
    total: int  # sources in the config
    by_state: dict[str, int]  # every source in the config, by state (filters ignored)


def _status() -> sa.ColumnElement[str]:
    """The state the overview shows (one of ``STATES``)."""
    s = sources_table.c
    return sa.case((s.enabled == sa.false(), "disabled"), else_=sa.func.coalesce(s.status, "new"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(
    filters: Filters, dialect: str = "", *, hide_state: bool = False
) -> list[sa.ColumnElement[bool]]:
    """The filters' conditions. ``hide_state``: the state's through coalesce(), which
    no index holds, so that the planner walks the order's index instead of the
    (status, enabled, position) one (``_page_names``)."""
    s = sources_table.c
    clauses: list[sa.ColumnElement[bool]] = [s.position.is_not(None)]
    if filters.name is not None:
        clauses.append(s.name == filters.name)
    status: Any = sa.func.coalesce(s.status, "new") if hide_state else s.status
    if filters.state == "problems":
        clauses += [status.in_(PROBLEMS), s.enabled == sa.true()]
    elif filters.state == "new" and hide_state:
        clauses += [status == "new", s.enabled == sa.true()]
    elif filters.state == "new":
        clauses += [sa.or_(s.status.is_(None), s.status == "new"), s.enabled == sa.true()]
    elif filters.state == "disabled":
        clauses.append(s.enabled == sa.false())
    elif filters.state:
        clauses += [status == filters.state, s.enabled == sa.true()]
    if filters.category:
        prefix = CATEGORY_SEPARATOR.join(filters.category)
        # This level, or below it: "a\x1fb" < x < "a\x1fb\x20" (as the feeds' queries do).
        clauses.append(
            sa.or_(
                s.category_path == prefix,
                sa.and_(
                    s.category_path >= prefix + CATEGORY_SEPARATOR,
                    s.category_path < prefix + chr(ord(CATEGORY_SEPARATOR) + 1),
                ),
            )
        )
    if filters.search:
        clauses.append(_found(filters, dialect))
    return clauses


def _found(filters: Filters, dialect: str) -> sa.ColumnElement[bool]:
    """The sources whose name, label, URL (redacted unless ``reveal``) or feed title
    hold the search text, in any case.

    ``search`` is lowercased by the sync (Python's lower: any script). The title and
    the full URL are not: SQLite's LIKE ignores ASCII case by itself (``ilike`` would
    call lower() on each row: half again the scan's time); elsewhere, ``ilike``.
    """
    s = sources_table.c
    needle = "%" + _escape_like(filters.search.lower()) + "%"
    found = [s.search.like(needle, escape="\\")]
    texts = [s.title, s.url] if filters.reveal else [s.title]
    for text in texts:
        if dialect == "sqlite":
            found.append(text.like(needle, escape="\\"))
        else:
            found.append(text.ilike(needle, escape="\\"))
    return sa.or_(*found)


def _order(filters: Filters) -> list[Any]:
    """The page's order."""
    c = sources_table.c
    if filters.sort == "name":
        return [c.name.desc() if filters.descending else c.name]
    if filters.sort == "failures":  # never NULL; ascending: the reverse of descending
        if filters.descending:
            return [c.failures.desc(), c.position]
        return [c.failures, c.position.desc()]
    if filters.sort == "state":
        return [_status().desc() if filters.descending else _status(), c.position]
    key: Any = {"last_poll": c.last_polled_at, "next_poll": c.next_poll_at}.get(filters.sort)
    if key is None:  # config order
        return [c.position.desc() if filters.descending else c.position]
    # NULLs (never polled) last either way, said explicitly: SQLite puts them first in
    # ascending order, PostgreSQL in descending order. Ties in the same direction, so
    # that one index on (time, position) serves both.
    if filters.descending:
        return [key.desc().nulls_last(), c.position.desc()]
    return [key.asc().nulls_last(), c.position]


#: A filter matching at least 1/DENSE of the listed sources is paged along its order's
#: index (a page is found after about DENSE rows per row shown); one matching fewer is
#: found first, then sorted (fewer than 1/DENSE of the sources: a small sort).
DENSE = 20

#: The most matches of a search sorted by name list (``_sorted_hits``): bound parameters.
MAX_HITS = 5000

#: The state sort's groups, in the order of their names (what ``_status`` sorts by).
STATE_ORDER = tuple(sorted(STATES))


def _page_names(
    conn: Connection,
    filters: Filters,
    matching: int,
    by_state: dict[str, int],
    offset: int,
    limit: int,
) -> list[str]:
    """The names of the page's sources, in order; ``matching``: how many the filters
    match, ``by_state``: every listed source by state.

    Which plan fits depends on how many sources match, which is known by now:

    * no filter, config order: positions are 0..n-1, so a page is a range of them;
    * no filter, state order: the groups of each state, in turn, in config order:
      each group's part of the page is a range of the (status, enabled, position)
      index (their sizes are the counts by state);
    * a filter that matches many: along the order's index (the state's index hidden),
      the filter checked on the way;
    * one that matches few: those found first (the search index, a state's, a
      category's), MATERIALIZED so that the planner cannot fold it into a walk along
      the order, then sorted.
    """
    s = sources_table.c
    total = sum(by_state.values())
    dialect = conn.dialect.name
    if not _filtered(filters) and filters.sort == "config":
        first = total - 1 - offset if filters.descending else offset
        last = s.position <= first if filters.descending else s.position >= first
        where = [*_where(filters), last]
        query = sa.select(s.name).where(*where).order_by(*_order(filters)).limit(limit)
        return list(conn.execute(query).scalars())
    if not _filtered(filters) and filters.sort == "state":
        return _state_groups(conn, filters, by_state, offset, limit)
    if matching * DENSE >= total:
        where = _where(filters, dialect, hide_state=filters.sort != "config")
        query = sa.select(s.name).where(*where).order_by(*_order(filters))
        return list(conn.execute(query.offset(offset).limit(limit)).scalars())
    # Only the names (the search index holds them), then the rows they name, sorted.
    matched = sa.select(s.name).where(*_where(filters, dialect)).cte("matched")
    if dialect != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
        matched = matched.prefix_with("MATERIALIZED")  # older SQLite: the planner's choice
    query = (
        sa.select(s.name)
        .select_from(matched.join(sources_table, s.name == matched.c.name))
        .order_by(*_order(filters))
    )
    return list(conn.execute(query.offset(offset).limit(limit)).scalars())


def _filtered(filters: Filters) -> bool:
    return bool(filters.state or filters.category or filters.search or filters.name)


def _state_groups(
    conn: Connection, filters: Filters, by_state: dict[str, int], offset: int, limit: int
) -> list[str]:
    """The page of the list in state order, each state's part from its own index range."""
    names: list[str] = []
    order = STATE_ORDER[::-1] if filters.descending else STATE_ORDER
    for state in order:
        size = by_state[state]
        if offset >= size:
            offset -= size
            continue
        group = replace(filters, state=state, sort="config", descending=False)
        query = (
            sa.select(sources_table.c.name)
            .where(*_where(group))
            .order_by(sources_table.c.position)
            .offset(offset)
            .limit(limit - len(names))
        )
        names += conn.execute(query).scalars()
        offset = 0
        if len(names) >= limit:
            break
    return names


def source_page(
    conn: Connection,
    filters: Filters,
    *,
    offset: int,
    limit: int,
    since: datetime,
) -> SourcePage:
    """The sources ``filters`` match, ``limit`` from ``offset`` in their order, with counts.

    Each row: name, url (in full: the caller redacts), path (the label), status, the
    recorded state's columns, ``articles`` and ``recent`` (kept entries, and those first
    seen since ``since``): counted for this page's sources only.
    """
    s = sources_table.c
    by_state = state_counts(conn)
    total = sum(by_state.values())
    matching = total
    if filters.search:
        # A search is a scan (of the search index): one, which finds every match when
        # they are few; when they are many, counted apart, and paged along the order.
        few = min(total // DENSE, MAX_HITS)
        where = _where(filters, conn.dialect.name)
        probe = sa.select(s.position, s.name).where(*where).limit(few + 1)
        hits = [(row.position, row.name) for row in conn.execute(probe)]
        if len(hits) <= few:
            page = _sorted_hits(conn, filters, hits, offset, limit)
            return _page(conn, page, since, SourcePage([], len(hits), total, by_state))
    if _filtered(filters):
        where = _where(filters, conn.dialect.name)
        query = sa.select(sa.func.count()).select_from(sources_table).where(*where)
        matching = int(conn.execute(query).scalar_one())
    page = _page_names(conn, filters, matching, by_state, offset, limit)
    return _page(conn, page, since, SourcePage([], matching, total, by_state))


def _sorted_hits(
    conn: Connection, filters: Filters, hits: list[tuple[int, str]], offset: int, limit: int
) -> list[str]:
    """The page of a search's few matches (position, name): in config order, sorted
    here; in another, by SQL over those names only."""
    if filters.sort == "config":
        ordered = sorted(hits, reverse=filters.descending)
        return [name for _, name in ordered[offset : offset + limit]]
    s = sources_table.c
    query = sa.select(s.name).where(s.name.in_([name for _, name in hits]))
    query = query.order_by(*_order(filters)).offset(offset).limit(limit)
    return list(conn.execute(query).scalars())


def _rows_query() -> sa.Select[Any]:
    """The listed columns of the sources named by the ``names`` parameter."""
    s = sources_table.c
    return sa.select(
        s.name,
        s.url,
        s.label.label("path"),
        _status().label("status"),
        s.title,
        s.last_polled_at,
        s.next_poll_at,
        s.last_ok_at,
        s.last_http_status,
        s.last_error,
        s.reason,
        s.moved_to,
        s.failures,
    ).where(s.name.in_(sa.bindparam("names", expanding=True)))


def _entry_counts_query() -> sa.Select[Any]:
    """(source, kept entries, those first seen since ``since``) of the ``names``."""
    t = entries_table.c
    since = sa.bindparam("since", type_=t.first_seen.type)
    recent = sa.func.sum(sa.case((t.first_seen >= since, 1), else_=0))
    return (
        sa.select(t.source, sa.func.count(), recent)
        .where(kept(), t.source.in_(sa.bindparam("names", expanding=True)))
        .group_by(t.source)
    )


# Made once: building a statement (an IN of a page of names above all) cost more than
# running it.
_ROWS, _ENTRY_COUNTS = _rows_query(), _entry_counts_query()


def _page(conn: Connection, page: list[str], since: datetime, around: SourcePage) -> SourcePage:
    """``around`` (the counts) with the rows of the sources named by ``page``, in order."""
    # The page's names first (along an index that holds them), then their rows by key.
    found = {r.name: dict(r._mapping) for r in conn.execute(_ROWS, {"names": page})}
    rows = [found[name] for name in page if name in found]
    counts = entry_counts(conn, [r["name"] for r in rows], since)
    for row in rows:
        row["articles"], row["recent"] = counts.get(row["name"], (0, 0))
    return replace(around, rows=rows)


def worst_query(limit: int = 10) -> sa.Select[Any]:
    """The ``limit`` listed, enabled sources in the worst shape: erroring, paused or
    gone, the most failures in a row first, then the longest without a good poll
    (never: first), then in config order.

    Where NULL goes is said (``nulls_first``): PostgreSQL would put it last.
    """
    s = sources_table.c
    return (
        sa.select(s.name, s.status, s.failures, s.last_ok_at, s.last_error, s.reason)
        # coalesce(): not the (status, ...) index, from which every problem row would be
        # sorted, but the one in failures order (ix_sources_failures), each count of
        # failures sorted by the last good poll, read until ``limit`` are found.
        .where(
            sa.func.coalesce(s.status, "").in_(PROBLEMS),
            s.enabled == sa.true(),
            s.position.is_not(None),
        )
        .order_by(s.failures.desc(), s.last_ok_at.asc().nulls_first(), s.position)
        .limit(limit)
    )


def worst_sources(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` listed, enabled sources in the worst shape (``worst_query``)."""
    query = worst_query(limit)
    return [dict(row._mapping) for row in conn.execute(query)]


def state_counts(conn: Connection) -> dict[str, int]:
    """Every listed source, counted by state: one pass over the (status, enabled,
    position) index."""
    s = sources_table.c
    query = (
        sa.select(s.status, s.enabled, sa.func.count())
        .where(s.position.is_not(None))
        .group_by(s.status, s.enabled)
    )
    by_state = dict.fromkeys(STATES, 0)
    for status, enabled, count in conn.execute(query):
        state = "disabled" if not enabled else str(status or "new")
        if state in by_state:
            by_state[state] += int(count)
    return by_state


def entry_counts(
    conn: Connection, names: Sequence[str], since: datetime
) -> dict[str, tuple[int, int]]:
    """For each of ``names``: (kept entries, kept entries first seen since ``since``)."""
    found: dict[str, tuple[int, int]] = {}
    for chunk in chunks(sorted(set(names))):
        for row in conn.execute(_ENTRY_COUNTS, {"names": chunk, "since": since}):
            found[row[0]] = (int(row[1]), int(row[2] or 0))
    return found


def new_since(conn: Connection, since: datetime) -> int:
    """Kept entries first seen since ``since``, across every source."""
    t = entries_table
    query = sa.select(sa.func.count()).select_from(t).where(kept(), t.c.first_seen >= since)
    return int(conn.execute(query).scalar_one())
