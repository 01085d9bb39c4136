"""Local write faults: telling them apart from a source's failure, and keeping the ones
in force so that ``/healthz`` and the dashboard can show them.

A full posts disk once counted as a failure of every source polled meanwhile, so sources
backed off and ended paused long after space came back. A fault of our own disk or
database is the service's problem: it is recorded here (the service is degraded), the
sources keep their state, and it clears when articles are written to that place again.
"""

from __future__ import annotations

import errno
import sqlite3
import threading

# Errors of our own storage, not of what we were writing: no space, read-only file
# system, quota exceeded, the device failing; and a folder whose owner or mode changed
# under us, or a process out of file descriptors: nothing a source did.
LOCAL_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EROFS,
        errno.EDQUOT,
        errno.EIO,
        errno.EACCES,
        errno.EPERM,
        errno.EMFILE,
        errno.ENFILE,
    }
)
# SQLite's primary result codes for the same (https://sqlite.org/rescode.html), plus a
# damaged file: SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL,
# SQLITE_CANTOPEN, SQLITE_NOTADB.
LOCAL_SQLITE_CODES = frozenset({8, 10, 11, 13, 14, 26})

POSTS = "posts folder"
DATABASE = "database"


def is_local_os_fault(exc: OSError) -> bool:
    """True when an OSError says our storage is failing, whatever the file."""
    return exc.errno in LOCAL_ERRNOS


def is_local_sqlite_fault(exc: BaseException | None) -> bool:
    """True when a sqlite3 error says the database's storage or file is failing."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in LOCAL_SQLITE_CODES


class Faults:
    """The local faults in force, by place (posts folder, database); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, str] = {}

    def record(self, place: str, message: str) -> None:
        """Note that writing to ``place`` failed with ``message``."""
        with self._lock:
            self._open[place] = message

    def clear(self, place: str) -> None:
        """Note that a write to ``place`` succeeded: its fault, if any, is over."""
        if place in self._open:  # cheap check first: this runs on every write
            with self._lock:
                self._open.pop(place, None)

    def in_force(self, place: str) -> bool:
        """Whether writing to ``place`` failed last time."""
        with self._lock:
            return place in self._open

    def reasons(self) -> list[str]:
        """One line per fault in force, for /healthz and the dashboard."""
        with self._lock:
            return [f"{place}: {message}" for place, message in sorted(self._open.items())]
