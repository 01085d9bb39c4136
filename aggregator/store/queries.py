"""The index's read side: what the dashboard, the feeds and the scheduler look up.

Reads use their own connections, outside the store's write lock: in WAL mode a reader
sees the last commit and never waits for a poll's writes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.content.filter import Query
from aggregator.content.selection import Selection, pick
from aggregator.errors import StoreError
from aggregator.models import Enclosure, Person, PublishedEntry, Status, list_from_json
from aggregator.store.dialects import database_error
from aggregator.store.records import FeedVersion, SourceState
from aggregator.store.schema import (
    CATEGORY_SEPARATOR,
    UTCDateTime,
    category_path,
    departures_table,
    entries_table,
    hook_runs_table,
    kept,
    meta_table,
    polls_table,
    sources_table,
)


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``items`` in slices small enough for an SQL IN list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Queries:
    """Read methods of the Store (a mixin: the Store provides ``engine``)."""

    engine: Engine

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection, outside the write lock: in WAL mode readers see the
        last commit and never wait for a poll's writes (the dashboard stays fast)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(database_error(exc, self.engine.dialect.name)) from exc

    def source_names(self) -> list[str]:
        """Every source the index has entries or state for."""
        with self.reading() as conn:
            a = conn.execute(sa.select(sources_table.c.name)).scalars().all()
            b = conn.execute(sa.select(entries_table.c.source).distinct()).scalars().all()
        return sorted(set(a) | set(b))

    def count_entries(self, source: str | None = None, *, pruned: bool = False) -> int:
        """How many entries are kept (or, with ``pruned``, remembered as pruned)."""
        t = entries_table
        query = sa.select(sa.func.count()).select_from(t)
        query = query.where(t.c.pruned_at.is_not(None) if pruned else kept())
        if source is not None:
            query = query.where(t.c.source == source)
        with self.reading() as conn:
            return int(conn.execute(query).scalar_one())

    def entry(self, uid: str) -> dict[str, Any] | None:
        """One entry's index row, as a dict (for tools and tests)."""
        with self.reading() as conn:
            row = conn.execute(sa.select(entries_table).where(entries_table.c.uid == uid)).first()
        return dict(row._mapping) if row else None

    def entries(self, source: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Kept entries' index rows, newest first."""
        t = entries_table
        query = sa.select(t).where(kept()).order_by(t.c.date.desc(), t.c.id)
        if source is not None:
            query = query.where(t.c.source == source)
        if limit is not None:
            query = query.limit(limit)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def published(
        self,
        *,
        categories: Sequence[Sequence[str]] = (),
        sources: Sequence[str] = (),
        since: datetime | None = None,
        before: tuple[datetime, int] | None = None,
        limit: int = 50,
    ) -> list[tuple[int, PublishedEntry]]:
        """Kept entries, newest first, with their row id (for paging with ``before``).

        Args:
            categories: category paths; an entry matches one of them or lies below it.
            sources: source names; empty means every source.
            since: only entries dated at or after this time.
            before: (date, id) of the last entry of the previous page.
            limit: how many at most.
        """
        t = entries_table
        query = sa.select(*_PUBLISHED).where(kept())
        if categories:
            query = query.where(_in_categories(t.c.category_path, categories))
        if sources:
            query = query.where(t.c.source.in_(list(sources)))
        if since is not None:
            query = query.where(t.c.date >= since)
        if before is not None:
            date, row_id = before
            query = query.where(sa.or_(t.c.date < date, sa.and_(t.c.date == date, t.c.id < row_id)))
        query = query.order_by(t.c.date.desc(), t.c.id.desc()).limit(limit)
        with self.reading() as conn:
            return [(r.id, _published(r)) for r in conn.execute(query)]

    def feed_version(self, selection: Selection) -> FeedVersion:
        """The newest change to the entries a selection reads (inserted, updated, pruned,
        dropped, or moved out of its categories), from any process.

        A feed of every entry takes the store's last change (one row); any other the
        newest ``seq`` among the rows of its categories (the (category_path, seq) index)
        and sources, and of the departures from its categories. A change elsewhere leaves
        it as it was, and so its rendered copies and validators.
        """
        t, d = entries_table, departures_table
        with self.reading() as conn:
            m = meta_table
            rows = conn.execute(
                sa.select(m.c.key, m.c.value).where(m.c.key.in_(("content_version", "changed_at")))
            )
            found: dict[str, str] = {row[0]: row[1] for row in rows}
            seq = int(found.get("content_version") or 0)
            if not selection.categories and not selection.sources:
                when = found.get("changed_at") or None
                return FeedVersion(seq, _TIME.process_result_value(when, None) if seq else None)
            # Every change to an entry takes the next number of the store's sequence
            # (``take_change``): while it has not moved, no feed's version has either, and
            # the newest change among a large category's rows (tens of milliseconds at
            # 100,000 entries) is not looked for again. Read first, so a change committed
            # meanwhile is in the version found, and makes the next read look again.
            reads = (tuple(map(tuple, selection.categories)), tuple(selection.sources))
            known = self._versions.get(reads)
            if known is not None and known[0] == seq:
                return known[1]
            where: list[sa.ColumnElement[bool]] = []
            if selection.categories:
                where.append(_in_categories(t.c.category_path, selection.categories))
            if selection.sources:
                where.append(t.c.source.in_(list(selection.sources)))
            found_seq, found_at = _newest(conn, t, where)
            version = FeedVersion(found_seq or 0, found_at if found_seq else None)
            if selection.categories:
                left_seq, left_at = _newest(
                    conn, d, [_in_categories(d.c.category_path, selection.categories)]
                )
                if left_seq is not None and left_seq > version.seq:
                    version = FeedVersion(left_seq, left_at)
            self._versions[reads] = (seq, version)
            return version

    @functools.cached_property
    def _versions(self) -> dict[tuple[object, ...], tuple[int, FeedVersion]]:
        """Each selection's version, by what it reads (its categories and sources), with
        the store's sequence number read before it was found (``feed_version``)."""
        return {}

    def selected(self, selection: Selection, query: Query) -> list[PublishedEntry]:
        """The entries of a feed: the selection, then rules and query filters, newest
        first (what the web app serves and the static feeds write)."""
        return pick(selection, query, self._pages(selection, query))

    def _pages(self, selection: Selection, query: Query) -> Iterator[PublishedEntry]:
        before = None
        page = selection.page_size(query)
        while True:
            rows = self.published(
                categories=selection.categories,
                sources=selection.sources,
                since=query.since,
                before=before,
                limit=page,
            )
            for _, entry in rows:
                yield entry
            if len(rows) < page:
                return
            last_id, last = rows[-1]
            before = (last.date, last_id)

    def dropped(self, source: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The audit: entries that rules dropped, newest drop first."""
        t = entries_table
        query = (
            sa.select(
                t.c.source, t.c.uid, t.c.title, t.c.link, t.c.date, t.c.dropped_by, t.c.dropped_at
            )
            .where(t.c.dropped_by.is_not(None), t.c.pruned_at.is_(None))
            .order_by(t.c.dropped_at.desc(), t.c.id.desc())
            .limit(limit)
        )
        if source is not None:
            query = query.where(t.c.source == source)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def raw_entries(self, source: str | None = None) -> list[tuple[str, str, str | None]]:
        """(source, raw_json, dropped_by) of every entry not pruned, for rule dry runs."""
        t = entries_table
        query = sa.select(t.c.source, t.c.raw_json, t.c.dropped_by).where(
            t.c.pruned_at.is_(None), t.c.raw_json.is_not(None)
        )
        if source is not None:
            query = query.where(t.c.source == source)
        with self.reading() as conn:
            return [(r.source, r.raw_json, r.dropped_by) for r in conn.execute(query)]

    def polls(self, source: str) -> list[dict[str, Any]]:
        """The recorded polls of a source, newest first."""
        t = polls_table
        query = sa.select(t).where(t.c.source == source).order_by(t.c.id.desc())
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def hook_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest hook runs and webhook deliveries, newest first."""
        t = hook_runs_table
        with self.reading() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def source_states(self) -> dict[str, dict[str, Any]]:
        """Every source's recorded state, by name (one query, for the dashboard)."""
        with self.reading() as conn:
            return {r.name: _state_row(r) for r in conn.execute(sa.select(sources_table))}

    def source_state(self, name: str) -> dict[str, Any] | None:
        """A source's recorded state (its ``status`` a ``Status``)."""
        with self.reading() as conn:
            row = conn.execute(sa.select(sources_table).where(sources_table.c.name == name)).first()
        return _state_row(row) if row else None

    def counters(self) -> dict[str, int]:
        """The monotonic counters kept in the database."""
        with self.reading() as conn:
            rows = conn.execute(sa.select(meta_table.c.key, meta_table.c.value))
            return {r.key: int(r.value) for r in rows if r.value and r.value.isdigit()}

    def entry_counts(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Per source: (kept entries, kept entries first seen since ``since``)."""
        t = entries_table
        recent = sa.func.sum(sa.case((t.c.first_seen >= since, 1), else_=0))
        query = sa.select(t.c.source, sa.func.count(), recent).where(kept()).group_by(t.c.source)
        with self.reading() as conn:
            return {r[0]: (int(r[1]), int(r[2] or 0)) for r in conn.execute(query)}

    def entry_totals(self) -> dict[str, int]:
        """How many entries are kept, dropped by rules and pruned."""
        t = entries_table
        state = sa.case(
            (t.c.pruned_at.is_not(None), "pruned"),
            (t.c.dropped_by.is_not(None), "dropped"),
            else_="kept",
        )
        query = sa.select(state, sa.func.count()).group_by(state)
        totals = {"kept": 0, "dropped": 0, "pruned": 0}
        with self.reading() as conn:
            totals.update({r[0]: int(r[1]) for r in conn.execute(query)})
        return totals

    def load_states(self, names: Iterable[str]) -> dict[str, SourceState]:
        """The recorded state of those of ``names`` that have one."""
        t = sources_table
        wanted = sorted(set(names))
        found: dict[str, SourceState] = {}
        with self.reading() as conn:
            for chunk in chunks(wanted):
                for row in conn.execute(sa.select(t).where(t.c.name.in_(chunk))):
                    found[row.name] = _state(dict(row._mapping))
        return found

    def load_state(self, name: str) -> SourceState | None:
        """A source's recorded state, typed."""
        row = self.source_state(name)
        return None if row is None else _state(row)

    def next_polls(self) -> dict[str, datetime | None]:
        """Each known source's stored next-poll time."""
        t = sources_table
        with self.reading() as conn:
            return {
                r.name: r.next_poll_at for r in conn.execute(sa.select(t.c.name, t.c.next_poll_at))
            }


_TIME = UTCDateTime()


def _newest(
    conn: Connection, table: sa.Table, where: Sequence[sa.ColumnElement[bool]]
) -> tuple[int | None, datetime | None]:
    """The largest ``seq`` among ``table``'s rows that match, and its ``changed_at``
    ((None, None): no row)."""
    c = table.c
    if conn.dialect.name == "sqlite":
        # SQLite gives the bare column of the row whose seq is the largest.
        query = sa.select(sa.func.max(c.seq), c.changed_at).where(*where)
        seq, at = conn.execute(query).one()
        return seq, at
    # Elsewhere a bare column is an error: the top row, by the (category_path, seq) index.
    row = conn.execute(
        sa.select(c.seq, c.changed_at).where(*where).order_by(c.seq.desc()).limit(1)
    ).first()
    return (None, None) if row is None else (row.seq, row.changed_at)


def _in_categories(
    column: sa.ColumnElement[Any], categories: Sequence[Sequence[str]]
) -> sa.ColumnElement[bool]:
    """Rows whose category path is one of ``categories`` or lies below one of them."""
    matches = []
    for path in categories:
        prefix = category_path(path)
        # Entries at this level, or below it: "a\x1fb" < x < "a\x1fb\x20".
        matches.append(column == prefix)
        matches.append(
            sa.and_(
                column >= prefix + CATEGORY_SEPARATOR,
                column < prefix + chr(ord(CATEGORY_SEPARATOR) + 1),
            )
        )
    return sa.or_(*matches)


_PUBLISHED = (
    entries_table.c.id,
    entries_table.c.uid,
    entries_table.c.source,
    entries_table.c.title,
    entries_table.c.link,
    entries_table.c.author,
    entries_table.c.authors,
    entries_table.c.enclosures,
    entries_table.c.categories,
    entries_table.c.tags,
    entries_table.c.headimg,
    entries_table.c.summary,
    entries_table.c.body_html,
    entries_table.c.published,
    entries_table.c.updated,
    entries_table.c.date,
)


def _published(row: Any) -> PublishedEntry:
    return PublishedEntry(
        uid=row.uid,
        source=row.source,
        title=row.title or "",
        link=row.link,
        author=row.author or "",
        categories=tuple(json.loads(row.categories or "[]")),
        tags=tuple(json.loads(row.tags or "[]")),
        headimg=row.headimg or "",
        summary=row.summary or "",
        body_html=row.body_html or "",
        published=row.published,
        updated=row.updated,
        date=row.date,
        authors=list_from_json(Person, row.authors),
        enclosures=list_from_json(Enclosure, row.enclosures),
    )


def _state_row(row: Any) -> dict[str, Any]:
    """A state row as a dict, its status typed (``Status.NEW`` when never polled)."""
    values = dict(row._mapping)
    values["status"] = Status(values["status"] or Status.NEW)
    return values


def _state(row: Mapping[str, Any]) -> SourceState:
    return SourceState(
        name=row["name"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
        render_key=row.get("render_key"),
        status=Status(row["status"] or Status.NEW),
        failures=row["failures"] or 0,
        next_poll_at=row["next_poll_at"],
        config_hash=row["config_hash"],
        feed_hint=row.get("feed_hint"),
    )
