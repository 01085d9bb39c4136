"""The exporter (``aggregator export``): the outbox's article changes, made files.

Pollers without the posts folder (``aggregator poller``) leave each file their polls
write or delete in the outbox (``store/outbox.py``), committed with the entry rows. The
exporter, one per posts folder (``outbox.exporter_lock``), reads the rows in ``id``
order, a batch at a time, writes and deletes the files with the atomic writer, then
deletes the rows in one transaction, then tells the hooks what the batch changed.

A write is carried out only while its text is the entry's as the index records it
(``file_hash``): an older row of an entry, which a later row (or ``aggregator poll``
with the folder) has superseded, is passed over, so the newest text is the one that
stays, whatever the order the rows became visible in. Applying a row twice is harmless
(a write writes the same bytes again; a delete finds the file gone, or no longer the
entry's), so a crash anywhere loses and duplicates nothing: the rows go only once their
files are on disk, and a restarted exporter starts again at the first row still there.

A file at an article's path that is not that entry's article (no or another
``entry_id``: someone's own file) is never overwritten: the article goes where
``aggregator run`` would have put it, its name with the entry's id as a suffix, and the
entry's row follows it; either way the dashboard's Hooks table shows an ``export`` run
that failed, with what was done instead.

An idle exporter waits for a poller's commit to notify it (PostgreSQL's LISTEN/NOTIFY,
``store/notify.py``), and looks every ``POLL_SECONDS`` anyway: a notification lost
costs a second, never a row.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aggregator.content.convert import article_name, text_hash
from aggregator.errors import AggregatorError, LocalFaultError
from aggregator.models import Changes, EntryChange
from aggregator.store import Store, notify, outbox
from aggregator.store.notify import Listener
from aggregator.store.outbox import DELETE, Owner, Pending
from aggregator.store.records import HookRun

log = logging.getLogger(__name__)

BATCH = 200  # rows applied per transaction
POLL_SECONDS = 1.0  # how often an idle exporter looks for new rows without a notification


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Drained:
    """What draining did."""

    #: Outbox rows applied (and deleted).
    rows: int = 0
    #: Files written and deleted, and the entries new or updated upstream among them.
    changes: Changes = field(default_factory=Changes)
    #: Articles that could not go to their path (someone's own file was there).
    problems: tuple[HookRun, ...] = ()

    def __add__(self, other: Drained) -> Drained:
        return Drained(
            self.rows + other.rows,
            self.changes + other.changes,
            self.problems + other.problems,
        )


class Exporter:
    """Drains the outbox into the posts folder of ``store``.

    The caller holds the single-exporter lock (``outbox.exporter_lock``).

    Args:
        store: the index and the posts folder.
        on_change: told what each batch that changed files changed (the hooks).
        after: called by ``run`` when it starts and after each drain that applied rows
            (the static feeds: the entries changed).
        batch: rows per batch.
        clock: the current UTC time (the problems' records).
        look_every: seconds between two looks at the outbox when no notification
            comes (the fallback; on PostgreSQL a poller's commit wakes the exporter).
    """

    def __init__(
        self,
        store: Store,
        on_change: Callable[[Changes], None] | None = None,
        *,
        after: Callable[[], None] = lambda: None,
        batch: int = BATCH,
        clock: Callable[[], datetime] = _utcnow,
        look_every: float = POLL_SECONDS,
    ) -> None:
        if store.outbox:
            raise ValueError("the exporter needs a store with the posts folder")
        self.store = store
        self.on_change = on_change
        self.after = after
        self.look_every = look_every
        self.batch = batch
        self.clock = clock

    def drain(
        self, should_stop: Callable[[], bool] = lambda: False, *, once: bool = False
    ) -> Drained:
        """Apply batches until the outbox is empty (or ``should_stop``, between two).

        Args:
            should_stop: asked between two batches.
            once: only the rows there now (``aggregator export --once``: it ends even
                while pollers keep adding rows).

        Raises:
            LocalFaultError: the posts folder is failing (full, read-only): the batch's
                rows stay, to be applied again.
        """
        up_to = None
        if once:
            with self.store.reading() as conn:
                up_to = outbox.last_id(conn)
        total = Drained()
        while not should_stop():
            done = self.drain_batch(up_to)
            if not done.rows:
                break
            total += done
        return total

    def drain_batch(self, up_to: int | None = None) -> Drained:
        """Apply the first rows of the outbox (of an id up to ``up_to``), then delete
        them; tell ``on_change``."""
        with self.store.reading() as conn:
            rows = outbox.pending(conn, self.batch, up_to)
            owners = outbox.owners(conn, {r.item.uid for r in rows})
        if not rows:
            return Drained()
        started = time.monotonic()
        done, moves = self._apply(rows, owners)
        with self.store.transaction() as conn:
            outbox.finish(conn, [r.id for r in rows], moves)
        for problem in done.problems:
            self.store.record_hook_run(problem)
        changes = done.changes
        log.info(
            "export rows=%d written=%d deleted=%d moved=%d ms=%d",
            done.rows,
            len(changes.written),
            len(changes.deleted),
            len(moves),
            round((time.monotonic() - started) * 1000),
        )
        if self.on_change is not None and changes.files:
            self.on_change(changes)
        return done

    def run(self, stop: threading.Event) -> None:
        """Drain, then wait for new rows, until ``stop`` is set. A failure (a full or
        read-only folder, a locked database, a bug) is logged and the batch tried again
        at the next look: its rows are still there."""
        listener = Listener(self.store.engine, [notify.OUTBOX])
        listener.open()  # before the first drain: a commit after it is not missed
        try:
            self.after()  # entries may have changed while no exporter ran
            while not stop.is_set():
                try:
                    if self.drain(stop.is_set).rows:
                        self.after()
                except AggregatorError as exc:
                    log.error("export paused: %s", exc)
                except Exception:  # a bug must not end the service; the rows wait
                    log.exception("export failed unexpectedly")
                # Until a poller's commit notifies (PostgreSQL), or the next look.
                listener.wait(self.look_every, stop)
        finally:
            listener.close()

    def _apply(
        self, rows: Sequence[Pending], owners: dict[str, Owner]
    ) -> tuple[Drained, dict[str, str]]:
        """Carry out rows in order: their files, what changed, and the entries moved
        (uid → new path) because someone's file was at theirs."""
        files = self.store.files
        moves: dict[str, str] = {}
        written: list[str] = []
        deleted: list[str] = []
        entries: list[EntryChange] = []
        problems: list[HookRun] = []
        for row in rows:
            item = row.item
            if item.op == DELETE:
                if files.entry_id_of(item.path) == item.uid:  # only the entry's own article
                    files.delete_file(item.path)
                deleted.append(item.path)
                continue
            owner = owners.get(item.uid)
            path = moves.get(item.uid) or (owner.path if owner is not None else None)
            if owner is None or path is None or item.text is None:
                continue  # pruned or dropped since: the delete that followed is queued too
            if item.change is not None:  # the entry did change upstream, written or not
                entries.append(replace(owner.change, kind=item.change, path=path))
            if text_hash(item.text) != owner.file_hash:
                # Not the entry's text now: a later row of the outbox (or a writer with
                # the folder) has the newer one. Writing this would only be undone, or
                # would undo the newer.
                continue
            if not self._free_for(path, item.uid):
                moved, problem = self._move(path, item.uid, owner)
                problems.append(problem)
                if moved is None:
                    continue
                moves[item.uid] = path = moved
            failures = files.write_files({path: item.text})
            if path in failures:
                error = failures[path]
                if isinstance(error, LocalFaultError):
                    raise error  # the folder's fault: the rows stay for the next try
                problems.append(self._problem(path, str(error)))
                continue
            written.append(path)
        changes = Changes(tuple(dict.fromkeys(written)), tuple(deleted), tuple(entries))
        return Drained(len(rows), changes, tuple(problems)), moves

    def _free_for(self, path: str, uid: str) -> bool:
        """Whether the entry ``uid``'s article may be written at ``path``: nothing is
        there (no file, folder or link), or the entry's own article is."""
        files = self.store.files
        if not os.path.lexists(files.file_path(path)):
            return True
        return files.file_exists(path) and files.entry_id_of(path) == uid

    def _move(self, path: str, uid: str, owner: Owner) -> tuple[str | None, HookRun]:
        """Where an article goes when someone's file is at its path: the name with its
        id as a suffix (``decide``'s own rule for a taken name), if that is free too;
        and the record of it for the dashboard."""
        folder = path.rpartition("/")[0]
        other = f"{folder}/{article_name(owner.change.title, uid)}"
        with self.store.reading() as conn:
            holder = outbox.fold_owner(conn, other)
        if other != path and holder in (None, uid) and self._free_for(other, uid):
            note = f"not this entry's article (entry_id {uid}): kept; the article is at {other}"
            return other, self._problem(path, note)
        note = f"not this entry's article (entry_id {uid}): kept; the article is not written"
        return None, self._problem(path, note)

    def _problem(self, path: str, error: str) -> HookRun:
        """An article the exporter could not write at ``path``, as the dashboard shows it."""
        return HookRun("export", path, self.clock(), 0.0, False, files=1, error=error)
