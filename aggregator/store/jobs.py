"""Jobs: one-at-a-time work on the whole index (a rebuild, a prune), asked for from any
process and run by one that has pollers.

A request is a row (``request``): a web replica's "Rebuild" button needs no poller in
its process. Processes with pollers (``aggregator run``, ``aggregator poller``) look for
waiting rows every second and run them under the jobs lock (``locks.session_lock``), so
two never run at once, on one machine or many; ``aggregator rebuild`` and
``aggregator prune`` take the same lock and record their runs the same way. Every
replica shows how the latest went from its row.

A runner that dies leaves its row "running" and drops the lock (the lock is its
connection's, or its open file's): whoever takes the lock next marks that row failed.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aggregator.models import RebuildStatus, SourceOutcome
from aggregator.store.dialects import insert_ignore
from aggregator.store.locks import session_lock
from aggregator.store.notify import WAKE, notify
from aggregator.store.schema import jobs_table

if TYPE_CHECKING:
    from aggregator.store.index import Store

REBUILD = "rebuild"
PRUNE = "prune"
KINDS = (REBUILD, PRUNE)

PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"

LOCK = "jobs"  # the one lock every job runs under
ORPHANED = "its process stopped before it ended; ask for it again"


@dataclass(frozen=True, slots=True)
class Job:
    """One job's row."""

    id: int
    kind: str
    state: str
    requested_at: datetime
    requested_by: str
    started_at: datetime | None
    finished_at: datetime | None
    runner: str | None
    result: Mapping[str, Any]


class Clock(Protocol):
    """The current UTC time."""

    def __call__(self) -> datetime: ...


class Requests:
    """Asks for jobs, and tells how the latest rebuild went: all a process that runs
    none needs (``aggregator serve``: its dashboard's "Rebuild" is a row). The web
    layer's ``Rebuilds``."""

    def __init__(self, store: Store, clock: Clock, by: str = "dashboard") -> None:
        self.store = store
        self.clock = clock
        self.by = by

    def request(self, kind: str) -> bool:
        """Ask for a job of ``kind``; False when one is waiting or running already."""
        with self.store.transaction() as conn:
            return request(conn, kind, self.clock(), self.by)

    def rebuild(self) -> bool:
        """Ask for a rebuild; False when one is waiting or running already."""
        return self.request(REBUILD)

    @property
    def rebuild_status(self) -> RebuildStatus:
        """How the latest rebuild went, that it runs, or that it waits for a runner."""
        with self.store.reading() as conn:
            return rebuild_status(latest(conn, REBUILD))


def runner_name() -> str:
    """Who runs a job, as the dashboard names it: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def request(conn: Connection, kind: str, now: datetime, by: str) -> bool:
    """Ask for a job of ``kind``; False when one is waiting or running already.

    Raises:
        ValueError: ``kind`` is not one of ``KINDS``.
    """
    if kind not in KINDS:
        raise ValueError(f"no job {kind!r}")
    t = jobs_table
    busy = sa.select(t.c.id).where(t.c.kind == kind, t.c.state.in_((PENDING, RUNNING)))
    if conn.execute(busy.limit(1)).first() is not None:
        return False
    # Two replicas asking at once: the unique index over waiting rows keeps one.
    row = {"kind": kind, "state": PENDING, "requested_at": now, "requested_by": by}
    inserted = conn.execute(insert_ignore(conn, t).values(row).returning(t.c.id)).first()
    if inserted is None:
        return False
    notify(conn, WAKE)  # the pollers' look for jobs, at the commit
    return True


def waiting(conn: Connection) -> bool:
    """Whether a runner has something to do (read every second): a job waits, or a row
    says one runs, which is an orphan unless its runner holds the jobs lock (the runner
    that looks finds out: ``take`` marks an orphan failed)."""
    t = jobs_table
    busy = sa.select(t.c.id).where(t.c.state.in_((PENDING, RUNNING)), t.c.kind.in_(KINDS))
    return conn.execute(busy.limit(1)).first() is not None


def take(conn: Connection, now: datetime, runner: str) -> Job | None:
    """The oldest waiting job, now marked running by ``runner``; None when none waits.

    The caller holds the jobs lock: a row still "running" was left by a runner that
    died (it would hold the lock), and is marked failed first.
    """
    _fail_orphans(conn, now)
    t = jobs_table
    # Only the kinds this version knows: a newer one's job waits for a newer runner.
    waiting_rows = sa.select(t.c.id).where(t.c.state == PENDING, t.c.kind.in_(KINDS))
    row = conn.execute(waiting_rows.order_by(t.c.id).limit(1)).first()
    if row is None:
        return None
    return _start(conn, row.id, now, runner)


def start(conn: Connection, kind: str, now: datetime, runner: str, by: str) -> Job:
    """A job of ``kind`` run now by ``runner`` (a command): the waiting one, which this
    run answers, or a new row. The caller holds the jobs lock."""
    _fail_orphans(conn, now)
    t = jobs_table
    row = conn.execute(
        sa.select(t.c.id).where(t.c.kind == kind, t.c.state == PENDING).limit(1)
    ).first()
    if row is not None:
        return _start(conn, row.id, now, runner)
    # Running from the start: a dashboard's request meanwhile is a waiting row of its own.
    values = {
        "kind": kind,
        "state": RUNNING,
        "requested_at": now,
        "requested_by": by,
        "started_at": now,
        "runner": runner,
    }
    job_id = conn.execute(sa.insert(t).values(values).returning(t.c.id)).scalar_one()
    return _job(conn.execute(sa.select(t).where(t.c.id == job_id)).one())


def finish(
    conn: Connection, job_id: int, now: datetime, result: Mapping[str, Any], *, ok: bool = True
) -> None:
    """Record how a job ended (``result["error"]`` says why, when not ``ok``)."""
    t = jobs_table
    conn.execute(
        sa.update(t)
        .where(t.c.id == job_id, t.c.state == RUNNING)
        .values(state=DONE if ok else FAILED, finished_at=now, result=json.dumps(dict(result)))
    )


def latest(conn: Connection, kind: str) -> Job | None:
    """The newest job of ``kind``, whatever its state."""
    t = jobs_table
    row = conn.execute(
        sa.select(t).where(t.c.kind == kind).order_by(t.c.id.desc()).limit(1)
    ).first()
    return None if row is None else _job(row)


def rebuild_result(outcomes: Sequence[SourceOutcome]) -> dict[str, Any]:
    """What a rebuild's row keeps of its outcomes."""
    return {
        "sources": len(outcomes),
        "updated": sum(o.updated for o in outcomes),
        "failed": [o.source for o in outcomes if not o.ok or o.failed],
    }


def rebuild_status(job: Job | None) -> RebuildStatus:
    """A rebuild's row as the dashboard shows it."""
    if job is None:
        return RebuildStatus()
    result = job.result
    return RebuildStatus(
        requested_at=job.requested_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        sources=int(result.get("sources", 0)),
        updated=int(result.get("updated", 0)),
        failed=tuple(result.get("failed", ())),
        error=result.get("error"),
        runner=job.runner,
    )


@contextmanager
def lock(engine: sa.Engine) -> Iterator[None]:
    """Hold the jobs lock while inside.

    Raises:
        locks.LockHeld: another runner holds it (a job is running); not waited for.
    """
    with session_lock(engine, LOCK):
        yield


def _start(conn: Connection, job_id: int, now: datetime, runner: str) -> Job:
    t = jobs_table
    conn.execute(
        sa.update(t).where(t.c.id == job_id).values(state=RUNNING, started_at=now, runner=runner)
    )
    return _job(conn.execute(sa.select(t).where(t.c.id == job_id)).one())


def _fail_orphans(conn: Connection, now: datetime) -> None:
    t = jobs_table
    conn.execute(
        sa.update(t)
        .where(t.c.state == RUNNING)
        .values(state=FAILED, finished_at=now, result=json.dumps({"error": ORPHANED}))
    )


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        state=row.state,
        requested_at=row.requested_at,
        requested_by=row.requested_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        runner=row.runner,
        result=json.loads(row.result) if row.result else {},
    )
