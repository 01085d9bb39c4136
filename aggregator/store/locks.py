"""Locks across processes that share an index: one exporter per posts folder, one job
(a rebuild, a prune) at a time.

On PostgreSQL, a session advisory lock on a connection kept open while it is held; on
SQLite, ``flock`` on a file beside the database: an index in a SQLite file is only
shared by the processes of one machine. Either way the lock goes when its holder dies,
however it dies: no lease to wait out, none to steal by mistake.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class LockHeld(Exception):
    """Another process holds the lock (a local control-flow signal, never shown raw)."""


def lock_key(name: str, schema: str = "") -> int:
    """The advisory lock's key for ``name`` on PostgreSQL: a fixed number per lock and
    schema that no other lock of ours uses. Advisory locks are the database's, not the
    schema's: two deployments in two schemas of one database must not share one."""
    return zlib.crc32(f"aggregator {name} {schema}".encode()) or 1


@contextmanager
def session_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of the index behind ``engine`` while inside.

    Raises:
        LockHeld: another process (or another holder in this one) has it; not waited for.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = lock_key(name, conn.execute(sa.select(sa.func.current_schema())).scalar() or "")
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar()
            conn.commit()  # the lock is the session's: it outlives the transaction
            if not got:
                raise LockHeld
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                conn.commit()
        return
    database = engine.url.database
    if not database:  # an in-memory index is one process's: nobody to keep out
        yield
        return
    # flock locks belong to the open file: a second open in this process conflicts too.
    fd = os.open(f"{database}.{name}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockHeld from exc
        yield
    finally:
        os.close(fd)  # releases the lock
