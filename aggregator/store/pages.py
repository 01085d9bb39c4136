"""The stored web pages of full-text entries (the ``pages`` table): reads and writes.

Each function works inside the caller's connection: writes inside ``Store.transaction()``
(the write lock), reads in any. A page is kept compressed (zlib): news pages are mostly
markup and shrink about five times.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from aggregator.content.fulltext import Page
from aggregator.store.queries import chunks
from aggregator.store.schema import entries_table, pages_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class PageWork:
    """An entry whose page is to be fetched, or whose stored page is to be applied again."""

    #: The entry's key in its source.
    key: str
    #: The entry's link (the page's address).
    link: str
    #: The entry as parsed (``ParsedEntry.to_json``).
    raw_json: str
    #: Its hash: what the page's result is recorded against.
    raw_hash: str
    #: True: no page is stored yet, it must be fetched first.
    fetch: bool


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A stored page, or the failure of its fetch."""

    page: Page | None  # None: the fetch failed (see ``error``)
    error: str | None


@dataclass(frozen=True, slots=True)
class PageResult:
    """What an extraction did with an entry's page (recorded on its row)."""

    key: str
    body_from: str  # "page" or "feed"
    reason: str | None  # why the feed's own body was kept
    applied_hash: str  # the entry's raw_hash this was decided for


def page_work(conn: Connection, source: str, limit: int) -> list[PageWork]:
    """Kept entries of ``source`` with a web link whose page is not fetched yet, or whose
    entry changed since its page was last applied (the poll wrote the feed's body again)."""
    e, p = entries_table, pages_table
    # Any case of the scheme: SQLite's LIKE ignores ASCII case, PostgreSQL's ILIKE.
    like = e.c.link.like if conn.dialect.name == "sqlite" else e.c.link.ilike
    query = (
        sa.select(e.c.key, e.c.link, e.c.raw_json, e.c.raw_hash, p.c.key.label("page_key"))
        .select_from(e.outerjoin(p, sa.and_(p.c.source == e.c.source, p.c.key == e.c.key)))
        .where(
            e.c.source == source,
            e.c.pruned_at.is_(None),
            e.c.dropped_by.is_(None),
            e.c.raw_json.is_not(None),
            sa.or_(like("http://%"), like("https://%")),
            sa.or_(p.c.key.is_(None), p.c.applied_hash.is_distinct_from(e.c.raw_hash)),
        )
        .order_by(e.c.date.desc())
        .limit(limit)
    )
    return [
        PageWork(r.key, r.link, r.raw_json, r.raw_hash or "", r.page_key is None)
        for r in conn.execute(query)
    ]


def save_page(
    conn: Connection,
    source: str,
    key: str,
    now: datetime,
    *,
    page: Page | None,
    status: int | None,
    error: str | None,
) -> None:
    """Keep a fetched page (or the failure of its fetch) for an entry, replacing any."""
    values: dict[str, Any] = {
        "url": page.url if page else None,
        "fetched_at": now,
        "http_status": status,
        "content_type": page.content_type if page else None,
        "body": zlib.compress(page.body, 6) if page else None,
        "error": error,
        "body_from": None,
        "reason": None,
        "applied_hash": None,
    }
    t = pages_table
    conn.execute(sa.delete(t).where(t.c.source == source, t.c.key == key))
    conn.execute(sa.insert(t).values(source=source, key=key, **values))


def load_pages(conn: Connection, source: str, keys: Iterable[str]) -> dict[str, StoredPage]:
    """The stored pages of those of ``keys`` that have one: key → page."""
    t = pages_table
    found: dict[str, StoredPage] = {}
    for chunk in chunks(sorted(set(keys))):
        rows = conn.execute(
            sa.select(t.c.key, t.c.url, t.c.body, t.c.content_type, t.c.error).where(
                t.c.source == source, t.c.key.in_(chunk)
            )
        )
        for r in rows:
            page = None
            if r.body is not None:
                page = Page(r.url or "", zlib.decompress(r.body), r.content_type or "")
            found[r.key] = StoredPage(page, r.error)
    return found


def record_results(conn: Connection, source: str, results: Sequence[PageResult]) -> None:
    """Note where each entry's body came from, and why a page was not used."""
    t = pages_table
    for result in results:
        conn.execute(
            sa.update(t)
            .where(t.c.source == source, t.c.key == result.key)
            .values(
                body_from=result.body_from,
                reason=result.reason,
                applied_hash=result.applied_hash,
            )
        )


def forget_pages(conn: Connection, source: str) -> int:
    """Delete the stored pages of ``source`` (a refetch); returns how many there were."""
    t = pages_table
    return conn.execute(sa.delete(t).where(t.c.source == source)).rowcount


def drop_orphan_pages(conn: Connection, source: str) -> None:
    """Delete the pages of entries that are pruned or gone: nothing will use them."""
    e, p = entries_table, pages_table
    live = sa.select(e.c.key).where(e.c.source == source, e.c.pruned_at.is_(None))
    conn.execute(sa.delete(p).where(p.c.source == source, p.c.key.not_in(live)))


def page_notes(conn: Connection, source: str, limit: int = 100) -> list[dict[str, Any]]:
    """The latest page results of ``source``, newest first, for the dashboard."""
    e, p = entries_table, pages_table
    query = (
        sa.select(
            e.c.uid,
            e.c.title,
            p.c.url,
            p.c.fetched_at,
            p.c.http_status,
            p.c.error,
            p.c.body_from,
            p.c.reason,
        )
        .select_from(p.join(e, sa.and_(e.c.source == p.c.source, e.c.key == p.c.key)))
        .where(p.c.source == source)
        .order_by(p.c.fetched_at.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def body_origins(conn: Connection, source: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """key → where each of those entries' body came from ("page"/"feed") and why."""
    t = pages_table
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(keys))):
        rows = conn.execute(
            sa.select(t.c.key, t.c.url, t.c.body_from, t.c.reason, t.c.error).where(
                t.c.source == source, t.c.key.in_(chunk)
            )
        )
        found.update({r.key: dict(r._mapping) for r in rows})
    return found
