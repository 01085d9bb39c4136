"""What a poll carries between its stages, and how polls are grouped on the way.

A poll is fetched (``Fetched``) in a thread, parsed in the process pool (``Parsed``) and
stored and recorded by a writer, many to a transaction. Small documents go to the pool
several to a job (``parse_batch``: one pickling round trip for them); single polls that
end together are written together (``GroupRecorder``, a group commit). No I/O here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from aggregator.config import SourceConfig
from aggregator.errors import StoreError
from aggregator.poll.outcome import Attempt
from aggregator.poll.resolve import ResolvedSource
from aggregator.poll.worker import Prepared
from aggregator.store.records import PollRecord, SourceState

PARSE_BATCH = 16  # documents per job of the process pool, at most
PARSE_BATCH_BYTES = 256 * 1024  # and their bodies' bytes: big feeds still spread out


@dataclass(frozen=True, slots=True)
class Fetched:
    """A poll whose document came and is to be parsed (``prepare``), then stored."""

    source: SourceConfig
    #: Its state before the poll (None: never polled).
    state: SourceState | None
    resolved: ResolvedSource
    #: Where the document was found, after redirects, without credentials: the base of
    #: relative links.
    url: str
    body: bytes
    headers: dict[str, str]
    #: The poll so far: when it started, the answer, the validators for the next GET.
    attempt: Attempt
    #: ``time.perf_counter()`` at its start (the poll's duration).
    clock_start: float


@dataclass(frozen=True, slots=True)
class Parsed:
    """A poll whose document is parsed and converted, its articles not stored yet: the
    writer (``Poller._write``) stores them, and records the poll, with others'."""

    #: The poll (its body dropped once parsed).
    fetched: Fetched
    prepared: Prepared


#: A poll that ended, ready for the writer: its articles to store, or only its record.
Polled: TypeAlias = Parsed | PollRecord


class GroupRecorder:
    """Writes single polls (``aggregator run``'s jobs): their articles and records,
    several to a transaction when they end together: a group commit.

    A poll's thread returns once its poll is written. The first to arrive writes what is
    waiting; those that arrive meanwhile wait, and the next of them writes all of theirs
    in one transaction. Alone, a poll writes its own at once (no delay is added): its
    article files are on disk as soon as it has been parsed.
    """

    def __init__(self, write: Callable[[list[Polled], list[str | None]], list[PollRecord]]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: list[tuple[Polled, str | None, list[PollRecord]]] = []
        self._issued = 0  # tickets handed out
        self._written = 0  # every ticket up to this one is written
        self._writing = False

    def record(self, polled: Polled, lease: str | None = None) -> PollRecord:
        """Write ``polled`` (in a batch with others waiting), ending its claim's
        ``lease`` if it has one; returns its record as written.

        Raises:
            StoreError: the batch's writer failed before it came to this poll.
        """
        written: list[PollRecord] = []  # filled by whichever thread writes it
        with self._cond:
            self._issued += 1
            ticket = self._issued
            self._pending.append((polled, lease, written))
            while self._written < ticket:
                if self._writing:
                    self._cond.wait()
                    continue
                batch, self._pending = self._pending, []
                last = self._issued
                self._writing = True
                self._cond.release()
                try:
                    records = self._write([p for p, _, _ in batch], [le for _, le, _ in batch])
                    for (_, _, slot), record in zip(batch, records, strict=True):
                        slot.append(record)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._written = last
                    self._cond.notify_all()
        if not written:
            raise StoreError("the poll was not recorded: its batch's writer failed")
        return written[0]


def parse_batch(documents: list[Fetched]) -> list[Fetched]:
    """The first documents waiting, as many as make one job of the pool."""
    size = 0
    for count, document in enumerate(documents[:PARSE_BATCH]):
        size += len(document.body)
        if size > PARSE_BATCH_BYTES and count:
            return documents[:count]
    return documents[:PARSE_BATCH]
