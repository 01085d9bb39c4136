"""The dashboard's source list, paged, filtered, sorted and counted in SQL.

The sources live in the configuration (in memory) and their state in the index's
``sources`` table, which also keeps rows of sources removed from the config. Joining them
in Python costs a loop over every source per request (100,000 at the scale we aim for);
so each read connection gets a temporary table ``dash_sources`` holding the config's side
(name, position, category path, URLs, enabled) and the join, the filters, the counts and
the page are one SQL statement each. The table is filled once per connection and per
configuration (``ConfigRows.token``): a reload brings a new token, and the next request on
each pooled connection fills it again (about a tenth of a second at 100,000 sources), then
requests cost what their page costs.

Why a temporary table and not columns of ``sources``: the index's copy of the config is
another part of the work (sources synced into the index); once it lands, the temporary
table is replaced by those columns and the statements stay the same.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
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

# The temporary table's own copy of the table definitions (SQLAlchemy Core, so the
# statements compile for PostgreSQL too). ``metadata`` is separate: ``create_all`` of
# the index must never make it a real table.
_meta = sa.MetaData()
dash_sources = sa.Table(
    "dash_sources",
    _meta,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("pos", sa.Integer, nullable=False),  # the order of config.yaml
    sa.Column("rank", sa.Integer, nullable=False),  # the order of the names
    sa.Column("path", sa.Text, nullable=False),  # categories joined by CATEGORY_SEPARATOR
    sa.Column("label", sa.Text, nullable=False),  # categories joined by " › "
    sa.Column("url", sa.Text, nullable=False),  # in full: only the admin sees or searches it
    sa.Column("url_shown", sa.Text, nullable=False),  # redacted: what visitors see and search
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Index("ix_dash_sources_pos", "pos", unique=True),
    sa.Index("ix_dash_sources_rank", "rank", unique=True),
    sa.Index("ix_dash_sources_path", "path"),
    prefixes=["TEMPORARY"],
)
dash_token = sa.Table(
    "dash_token", _meta, sa.Column("token", sa.String, nullable=False), prefixes=["TEMPORARY"]
)


@dataclass(frozen=True, slots=True)
class ConfigRows:
    """The config's side of the source list, computed once per configuration.

    ``rows``: (name, position, rank by name, category path, label, URL, redacted URL,
    enabled), in config order. ``token`` names this configuration: a connection whose table holds
    another token fills it again.
    """

    token: str
    rows: tuple[tuple[str, int, int, str, str, str, str, bool], ...]
    names: frozenset[str]  # every source's name
    disabled: frozenset[str]  # the names of those with ``enabled: false``

    @classmethod
    def of(cls, token: str, rows: Sequence[tuple[str, str, str, str, str, bool]]) -> ConfigRows:
        """From (name, category path, label, URL, redacted URL, enabled), in config order."""
        rank = {name: i for i, name in enumerate(sorted(row[0] for row in rows))}
        return cls(
            token=token,
            rows=tuple((row[0], pos, rank[row[0]], *row[1:]) for pos, row in enumerate(rows)),
            names=frozenset(row[0] for row in rows),
            disabled=frozenset(row[0] for row in rows if not row[5]),
        )


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


PROBLEMS = ("erroring", "paused", "gone")


def _status() -> sa.ColumnElement[str]:
    c, s = dash_sources.c, sources_table.c
    return sa.case((c.enabled.is_(False), "disabled"), else_=sa.func.coalesce(s.status, "new"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ensure(conn: Connection, config: ConfigRows) -> None:
    """Fill this connection's temporary table with ``config``, unless it holds it."""
    _meta.create_all(conn, checkfirst=True)
    if conn.execute(sa.select(dash_token.c.token)).scalar() == config.token:
        conn.commit()
        return
    conn.execute(sa.delete(dash_sources))
    conn.execute(sa.delete(dash_token))
    keys = ("name", "pos", "rank", "path", "label", "url", "url_shown", "enabled")
    for start in range(0, len(config.rows), 5000):
        batch = config.rows[start : start + 5000]
        conn.execute(sa.insert(dash_sources), [dict(zip(keys, row, strict=True)) for row in batch])
    conn.execute(sa.insert(dash_token).values(token=config.token))
    conn.commit()  # temporary tables only: the index itself is not written


def _where(filters: Filters) -> list[sa.ColumnElement[bool]]:
    c, s = dash_sources.c, sources_table.c
    clauses: list[sa.ColumnElement[bool]] = []
    if filters.name is not None:
        clauses.append(c.name == filters.name)
    # On the columns themselves, not on the status expression: the join then starts
    # from the sources table's index on status, not from every source.
    if filters.state == "problems":
        clauses += [s.status.in_(PROBLEMS), c.enabled.is_(True)]
    elif filters.state == "new":
        clauses += [s.name.is_(None), c.enabled.is_(True)]
    elif filters.state == "disabled":
        clauses.append(c.enabled.is_(False))
    elif filters.state:
        clauses += [s.status == filters.state, c.enabled.is_(True)]
    if filters.category:
        prefix = CATEGORY_SEPARATOR.join(filters.category)
        # This level, or below it: "a\x1fb" < x < "a\x1fb\x20" (as the feeds' queries do).
        clauses.append(
            sa.or_(
                c.path == prefix,
                sa.and_(
                    c.path >= prefix + CATEGORY_SEPARATOR,
                    c.path < prefix + chr(ord(CATEGORY_SEPARATOR) + 1),
                ),
            )
        )
    if filters.search:
        needle = "%" + _escape_like(filters.search) + "%"
        url = c.url if filters.reveal else c.url_shown
        # The feeds' titles through a subquery: a scan of one column of the sources
        # table, not a lookup of every source's row.
        t = sources_table.alias("titled")
        titled = sa.select(t.c.name).where(t.c.title.like(needle, escape="\\"))
        clauses.append(
            sa.or_(
                c.name.like(needle, escape="\\"),
                url.like(needle, escape="\\"),
                c.label.like(needle, escape="\\"),
                c.name.in_(titled),
            )
        )
    return clauses


def _order(filters: Filters) -> list[Any]:
    c, s = dash_sources.c, sources_table.c
    key: Any = {
        "config": c.pos,
        "name": c.name,
        "state": _status(),
        "last_poll": s.last_polled_at,
        "next_poll": s.next_poll_at,
        "failures": sa.func.coalesce(s.failures, 0),
    }.get(filters.sort, c.pos)
    if filters.descending:
        # NULLs (never polled) last either way: "nulls last" is not SQLite's default.
        return [key.is_(None), key.desc(), c.pos]
    return [key.is_(None), key.asc(), c.pos]


def source_page(
    conn: Connection,
    config: ConfigRows,
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
    _ensure(conn, config)
    c, s = dash_sources.c, sources_table.c
    joined = dash_sources.outerjoin(sources_table, s.name == c.name)
    status = _status().label("status")
    by_state = state_counts(conn, config)
    total = sum(by_state.values())
    where = _where(filters)
    if where:
        matching = int(
            conn.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one()
        )
    else:
        matching = total
    order = _order(filters)
    if not where and filters.sort in ("config", "name"):
        # The whole list in config or name order: positions are 0..n-1, so a page is a
        # range of them, read from the index (an OFFSET would step over every row before).
        key = c.pos if filters.sort == "config" else c.rank
        first = total - 1 - offset if filters.descending else offset
        where = [key <= first] if filters.descending else [key >= first]
        order = [key.desc() if filters.descending else key]
        offset = 0
    query = (
        sa.select(
            c.name,
            c.url,
            c.label.label("path"),
            status,
            s.title,
            s.last_polled_at,
            s.next_poll_at,
            s.last_ok_at,
            s.last_http_status,
            s.last_error,
            s.reason,
            s.moved_to,
            sa.func.coalesce(s.failures, 0).label("failures"),
        )
        .select_from(joined)
        .where(*where)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    )
    rows = [dict(r._mapping) for r in conn.execute(query)]
    counts = entry_counts(conn, [r["name"] for r in rows], since)
    for row in rows:
        row["articles"], row["recent"] = counts.get(row["name"], (0, 0))
    return SourcePage(rows=rows, matching=matching, total=total, by_state=by_state)


def worst_sources(conn: Connection, config: ConfigRows, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` sources in the worst shape: erroring, paused or gone, the most
    failures in a row first, then the longest without a good poll (never: first).

    Read from the ``sources`` table along its index in that order (SQLite puts NULL,
    never, first), skipping rows outside the config or of disabled sources, until
    ``limit`` are found.
    """
    s = sources_table.c
    query = (
        sa.select(s.name, s.status, s.failures, s.last_ok_at, s.last_error, s.reason)
        # coalesce(): not the index on status (then every problem row is sorted), but the
        # one in this order, read until ``limit`` are found.
        .where(sa.func.coalesce(s.status, "").in_(PROBLEMS))
        .order_by(s.failures.desc(), s.last_ok_at, s.name)
    )
    found = []
    for row in conn.execute(query):
        if row.name in config.names and row.name not in config.disabled:
            found.append(dict(row._mapping))
            if len(found) == limit:
                break
    return found


def state_counts(conn: Connection, config: ConfigRows) -> dict[str, int]:
    """Every source in the config, counted by state.

    Counted from the ``sources`` table's index on ``status`` (no join over every source):
    its rows by status, less those of disabled sources and of sources no longer in the
    config (``_outside``); the config's sources without a row are new.
    """
    s = sources_table.c
    recorded = {
        str(status): int(count)
        for status, count in conn.execute(sa.select(s.status, sa.func.count()).group_by(s.status))
    }
    for chunk in chunks(sorted(_outside(conn, config))):
        query = sa.select(s.status, sa.func.count()).where(s.name.in_(chunk)).group_by(s.status)
        for status, count in conn.execute(query):
            recorded[str(status)] -= int(count)
    by_state = dict.fromkeys(STATES, 0)
    for status, count in recorded.items():
        if status in by_state:
            by_state[status] += count
    by_state["disabled"] = len(config.disabled)
    by_state["new"] = len(config.names) - sum(by_state.values())
    return by_state


_OUTSIDE: dict[str, tuple[float, frozenset[str]]] = {}
OUTSIDE_TTL = 60.0  # seconds: rows of names outside the config appear only by a reload


def _outside(conn: Connection, config: ConfigRows) -> frozenset[str]:
    """Names with a state row that the counts leave out: disabled sources, and sources
    removed from the config (their rows stay).

    Found with one pass over the rows' names, once per configuration (and a minute):
    while a configuration is in force, no poll writes a row of a name outside it.
    """
    now = time.monotonic()
    found = _OUTSIDE.get(config.token)
    if found is not None and now - found[0] < OUTSIDE_TTL:
        return found[1]
    names = conn.execute(sa.select(sources_table.c.name)).scalars()
    outside = frozenset(n for n in names if n not in config.names or n in config.disabled)
    if len(_OUTSIDE) > 8:
        _OUTSIDE.clear()
    _OUTSIDE[config.token] = (now, outside)
    return outside


def entry_counts(
    conn: Connection, names: Sequence[str], since: datetime
) -> dict[str, tuple[int, int]]:
    """For each of ``names``: (kept entries, kept entries first seen since ``since``)."""
    t = entries_table
    recent = sa.func.sum(sa.case((t.c.first_seen >= since, 1), else_=0))
    found: dict[str, tuple[int, int]] = {}
    for chunk in chunks(sorted(set(names))):
        query = (
            sa.select(t.c.source, sa.func.count(), recent)
            .where(kept(), t.c.source.in_(chunk))
            .group_by(t.c.source)
        )
        for row in conn.execute(query):
            found[row[0]] = (int(row[1]), int(row[2] or 0))
    return found


def new_since(conn: Connection, since: datetime) -> int:
    """Kept entries first seen since ``since``, across every source."""
    t = entries_table
    query = sa.select(sa.func.count()).select_from(t).where(kept(), t.c.first_seen >= since)
    return int(conn.execute(query).scalar_one())
