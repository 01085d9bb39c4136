"""The outbox: article changes a poller decided, waiting for the exporter to write them.

A poller without the posts folder (``Store(outbox=True)``) appends each file its plan
writes or deletes here, in the transaction that writes the entry rows; the exporter
(``aggregator/export.py``) reads them in ``id`` order, carries them out with the atomic
writer and deletes them. Plain SQLAlchemy Core, for SQLite and PostgreSQL alike, except
the single-exporter lock (``exporter_lock``, ``store/locks.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aggregator.content.convert import fold_path
from aggregator.models import EntryChange, Person, list_from_json
from aggregator.store.locks import session_lock
from aggregator.store.notify import OUTBOX, notify
from aggregator.store.schema import entries_table, outbox_table

WRITE = "write"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One article file to write or delete, as a poll decided it."""

    #: ``WRITE`` or ``DELETE``.
    op: str
    #: Relative to the posts folder.
    path: str
    #: The entry_id of the entry whose article it is.
    uid: str
    #: The file's text (a write).
    text: str | None = None
    #: "new" or "updated" when the entry is new or updated upstream (the webhooks tell
    #: those); None: a file rewritten for another reason, or a delete.
    change: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox row not applied yet."""

    #: Its place in the order of application.
    id: int
    item: OutboxItem


@dataclass(frozen=True, slots=True)
class Owner:
    """What the exporter needs of an entry whose file it writes: where the file is now,
    and what the webhooks and a moved file's name are made of."""

    #: Its path now (None: pruned or dropped since).
    path: str | None
    #: The hash of its article's text as last decided (``convert.text_hash``): only a
    #: write of that text is the entry's current one.
    file_hash: str | None
    change: EntryChange


def append(conn: Connection, items: Sequence[OutboxItem], seq: int, now: datetime) -> None:
    """Add article changes to the outbox, in order (``seq``: the transaction's change)."""
    if items:
        conn.execute(
            sa.insert(outbox_table),
            [
                {
                    "op": i.op,
                    "path": i.path,
                    "uid": i.uid,
                    "text": i.text,
                    "change": i.change,
                    "seq": seq,
                    "created_at": now,
                }
                for i in items
            ],
        )
        notify(conn, OUTBOX)  # the exporter, at the commit


def pending(conn: Connection, limit: int, up_to: int | None = None) -> list[Pending]:
    """The first ``limit`` rows not applied yet (with an id of at most ``up_to``), in
    the order they are to be applied."""
    t = outbox_table
    statement = sa.select(t.c.id, t.c.op, t.c.path, t.c.uid, t.c.text, t.c.change)
    if up_to is not None:
        statement = statement.where(t.c.id <= up_to)
    rows = conn.execute(statement.order_by(t.c.id).limit(limit))
    return [Pending(r.id, OutboxItem(r.op, r.path, r.uid, r.text, r.change)) for r in rows]


def last_id(conn: Connection) -> int:
    """The id of the newest row (0: none)."""
    return int(conn.execute(sa.select(sa.func.max(outbox_table.c.id))).scalar() or 0)


def backlog(conn: Connection) -> int:
    """How many rows wait for the exporter."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one())


def owners(conn: Connection, uids: Iterable[str]) -> dict[str, Owner]:
    """The entries with those uids, as the exporter needs them (absent: no such entry)."""
    t = entries_table
    found: dict[str, Owner] = {}
    wanted = sorted(set(uids))
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            sa.select(
                t.c.uid,
                t.c.path,
                t.c.file_hash,
                t.c.source,
                t.c.title,
                t.c.link,
                t.c.authors,
                t.c.categories,
                t.c.tags,
                t.c.date,
            ).where(t.c.uid.in_(wanted[start : start + 500]))
        )
        for r in rows:
            found[r.uid] = Owner(r.path, r.file_hash, _entry_change(r))
    return found


def fold_owner(conn: Connection, path: str) -> str | None:
    """The uid of an indexed entry whose path folds as ``path`` does (None: free)."""
    t = entries_table
    return conn.execute(
        sa.select(t.c.uid).where(t.c.path_fold == fold_path(path)).limit(1)
    ).scalar()


def finish(conn: Connection, ids: Sequence[int], moves: Mapping[str, str]) -> None:
    """Applied: delete the rows, and give the entries the exporter moved their new path."""
    t = entries_table
    for uid, path in moves.items():
        conn.execute(
            sa.update(t).where(t.c.uid == uid).values(path=path, path_fold=fold_path(path))
        )
    o = outbox_table
    for start in range(0, len(ids), 500):
        conn.execute(sa.delete(o).where(o.c.id.in_(ids[start : start + 500])))


@contextmanager
def exporter_lock(engine: Engine) -> Iterator[None]:
    """Hold the single-exporter lock of the index behind ``engine`` while inside (one
    exporter per index, and so per posts folder: an index has one).

    Raises:
        locks.LockHeld: another exporter holds it; not waited for.
    """
    with session_lock(engine, "export"):
        yield


def _entry_change(r: Any) -> EntryChange:
    """An entries row as the webhooks tell it (its kind is the outbox row's)."""
    return EntryChange(
        kind="",  # the outbox row says which
        source=r.source,
        uid=r.uid,
        title=r.title or "",
        link=r.link,
        authors=list_from_json(Person, r.authors),
        categories=tuple(json.loads(r.categories or "[]")),
        tags=tuple(json.loads(r.tags or "[]")),
        date=r.date,
        path=r.path,
    )
