"""Wake-ups across processes: PostgreSQL's LISTEN/NOTIFY, with looking as the fallback.

A transaction that leaves work for another process says so (``notify``): outbox rows
for the exporter, a refresh or a job for the pollers. PostgreSQL delivers the
notification when the transaction commits, and not at all if it rolls back. A
``Listener`` waits for one, or for its timeout: the waiter looks anyway when the timeout
ends, as it did before, so a lost notification (a dropped connection, a restart) costs
one interval, never the work. SQLite has no notifications: every wait is the timeout.

Channels are the database's, not the schema's: two deployments in one database wake
each other now and then, and find nothing to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aggregator.redact import redact

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

OUTBOX = "aggregator_outbox"  # outbox rows to write (for the exporter)
WAKE = "aggregator_wake"  # a source made due by hand, or a job asked for (for pollers)
SLICE = 0.5  # seconds: how soon a waiter sees its stop
CONNECT_TIMEOUT = 5  # seconds to open the listening connection


def notify(conn: Connection, channel: str) -> None:
    """Wake the listeners of ``channel`` when this transaction commits (PostgreSQL;
    nothing on SQLite). Notifications of one transaction on one channel arrive once."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(channel, "")))


class Listener:
    """Waits for a notification on ``channels``, or for a timeout.

    On PostgreSQL it keeps a connection of its own (not the pool's: it is in LISTEN
    for as long as the listener lives), opened at the first wait and again after a
    failure. Not thread-safe: one waiter.
    """

    def __init__(self, engine: Engine, channels: Sequence[str]) -> None:
        self.engine = engine
        self.channels = tuple(channels)
        self.listening = engine.dialect.name == "postgresql"
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._failed = False  # the last connection failed: said once, until one works

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` s; True when a notification came (the ones already
        queued are taken with it). Without a connection, waits the timeout out, or
        until ``stop`` is set."""
        conn = self._connection() if self.listening else None
        if conn is None:
            (stop or threading.Event()).wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            while True:
                # In slices, so that a stop is seen within one.
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                if any(True for _ in conn.notifies(timeout=min(left, SLICE), stop_after=1)):
                    for _ in conn.notifies(timeout=0.0):
                        pass  # the rest of a burst: one look serves them all
                    return True
        except Exception as exc:  # a lost connection: looking goes on, a new one next time
            self._lost(exc)
            return False

    def open(self) -> bool:
        """Listen now (a notification sent from here on is not missed); False when it
        cannot (SQLite, or no connection: the waits fall back to looking)."""
        return self.listening and self._connection() is not None

    def close(self) -> None:
        """Stop listening."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]] | None:
        if self._conn is not None:
            return self._conn
        import psycopg
        from psycopg import sql

        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        try:
            # Bounded: a stop waits for this thread, and a server that does not answer
            # must not hold it for psycopg's default of minutes.
            kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
            conn = psycopg.connect(*args, **kwargs, autocommit=True)
            for channel in self.channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except Exception as exc:
            self._lost(exc)
            return None
        if self._failed:
            log.info("listening for notifications again")
            self._failed = False
        self._conn = conn
        return conn

    def _lost(self, exc: Exception) -> None:
        if not self._failed:
            log.warning("notifications not received, looking instead: %s", redact(str(exc)))
            self._failed = True
        self.close()
