"""Carrying out the "what changed" decision for one source: gather, decide, write.

``decide`` (pure) chooses; this module does the I/O around it, inside the caller's store
transaction: it reads what the index and the posts folder know of a batch, asks
``decide``, writes the article files (concurrently, when there are many), then the index
rows of the entries whose file is on disk. Used by every poll and by rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.content.convert import assign_keys, fold_path, keep_one_per_entry
from aggregator.errors import LocalFaultError, StoreError
from aggregator.models import Article, Changes, Counts, EntryChange, WriteFailure
from aggregator.poll.decide import (
    Batch,
    Change,
    Known,
    Look,
    OnDisk,
    Plan,
    PlannedRow,
    decide,
    files_to_examine,
    make_batch,
    wanted_paths,
)
from aggregator.poll.resolve import ResolvedSource
from aggregator.store import Store
from aggregator.store.outbox import DELETE, WRITE, OutboxItem
from aggregator.store.records import EntryRow, StoredEntry

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class Applied:
    """A batch whose files are written: the rows still to write, and the counts."""

    #: The source's name.
    source: str
    #: The rows of the entries whose file is on disk (or that have none: rule drops).
    rows: tuple[EntryRow, ...]
    #: Keys of entries seen again unchanged (only their last_seen moves).
    seen_again: tuple[str, ...]
    #: When they were seen.
    seen_at: datetime
    counts: Counts
    #: The article files to write and delete, for the exporter (a store without the
    #: posts folder: ``Store.outbox``); written after the rows, in their transaction.
    sent: tuple[OutboxItem, ...] = ()


class Ingest:
    """Applies converted articles of a source to the posts folder and the index.

    Files first, then rows (``write_files``, then ``write_rows``, in one transaction): a
    crash between the two leaves a complete file the index does not know yet, which the
    next poll adopts by its ``entry_id``. A store without the posts folder (a poller's,
    ``Store.outbox``) is told the files to write and delete instead, with the rows: the
    same plan, carried out later by the exporter (``aggregator/export.py``).

    Args:
        store: the index and the article files.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def write_files(
        self,
        conn: Connection,
        source: ResolvedSource,
        articles: Iterable[Article],
        now: datetime,
        *,
        keys: Sequence[str] | None = None,
        force: bool = False,
        stored: Mapping[str, StoredEntry] | None = None,
        chosen: set[str] | None = None,
    ) -> Applied:
        """Decide what changed and write (or delete) the article files.

        ``keys`` (for a rebuild) are the stored keys; otherwise they are assigned here.
        ``force`` renders every entry again even when nothing seems to have changed.
        ``stored``: the source's entries already read for every key and alt key of
        ``articles`` (``entry_keys``; the writer reads many polls' in one query).
        ``chosen``: the folds of the paths given, earlier in this transaction, to rows not
        written yet (the writer writes many polls' rows together): taken, as if indexed,
        and this batch's are added.
        """
        articles = list(articles)
        rebuild = keys is not None
        repeats: list[str] = []
        if keys is None:
            # A document's repeats of one entry become one article; the rebuild's
            # stored entries are one each already.
            kept, repeats = keep_one_per_entry(articles)
            articles = [k.article for k in kept]
            pairs = [(k.article.key, k.alt_keys) for k in kept]
            # One read for both: the keys' recorded alt keys, and the stored state of
            # whichever of them the entries get.
            if stored is None:
                stored = self.store.stored_entries(
                    conn, source.name, [k for key, alts in pairs for k in (key, *alts)]
                )
            recorded = {k: e.alt_key for k, e in stored.items() if e.alt_key is not None}
            keys = assign_keys(pairs, recorded)
        else:
            stored = None  # a rebuild's keys are the stored ones: read by them
        batch = make_batch(source, keys, articles)
        known = self._gather(conn, source, batch, rebuild, stored, chosen or frozenset())
        plan = decide(source, batch, known, now, rebuild=rebuild, force=force)
        files = self.store.files
        sent: tuple[OutboxItem, ...] = ()
        failures: dict[str, StoreError] = {}
        if self.store.outbox:
            sent = _outbox_items(plan, known)
        else:
            for path in plan.deletes:
                files.delete_file(path)
            # Concurrently: creating a file is mostly kernel time.
            failures = files.write_files(plan.writes)
        rows, counts = plan.settle(
            {
                path: WriteFailure(path, str(exc), isinstance(exc, LocalFaultError))
                for path, exc in failures.items()
            }
        )
        # The folders' listings (``Store.scan_folder``) stay current with our own writes.
        settled = [*(r.path for r in rows if r.path), *plan.deletes]
        for folder in {p.rpartition("/")[0] for p in (*plan.writes, *plan.deletes)}:
            self.store.folder_written(folder, settled, failed=bool(failures))
        if chosen is not None:
            chosen.update(fold_path(r.path) for r in rows if r.path)
        changes = _changes(plan.rows, plan.writes, plan.deletes, failures, rebuild=rebuild)
        return Applied(
            source.name,
            rows,
            plan.seen_again,
            now,
            Counts(warnings=tuple(repeats), changes=changes) + counts,
            sent,
        )

    def write_rows(self, conn: Connection, *batches: Applied) -> None:
        """Write the index rows of batches whose files ``write_files`` wrote (of several
        sources: one statement for all their rows)."""
        self.store.upsert_entries(conn, [row for applied in batches for row in applied.rows])
        for applied in batches:
            self.store.touch_entries(conn, applied.source, applied.seen_again, applied.seen_at)
        # After the rows: on PostgreSQL the entry rows' locks order two transactions that
        # change one entry, and so the ids of their outbox rows.
        self.store.send(conn, [item for applied in batches for item in applied.sent])

    def _gather(
        self,
        conn: Connection,
        source: ResolvedSource,
        batch: Batch,
        rebuild: bool,
        stored: Mapping[str, StoredEntry] | None,
        chosen: Set[str],
    ) -> Known:
        """What the index and the posts folder know of a batch, as values for ``decide``
        (``stored``: the source's entries already read, for keys the batch's among them;
        ``chosen``: folds taken by rows not written yet)."""
        if stored is None:
            stored = self.store.stored_entries(conn, source.name, batch.articles)
        entries = {key: stored[key] for key in batch.articles if key in stored}
        wanted = wanted_paths(source, batch, entries)
        taken: set[str] = set()
        orphans: Mapping[str, str] = {}
        if wanted:  # only new files need these (a folder listing is not free)
            folds = {fold_path(p) for p in wanted.values()}
            folder = self.store.scan_folder(conn, source.folder)
            taken = (self.store.folds_taken(conn, folds) | folder.folds | chosen) & folds
            orphans = folder.orphans
        looks = files_to_examine(source, batch, entries, wanted, orphans, rebuild=rebuild)
        return Known(
            entries=entries,
            taken=frozenset(taken),
            orphans=orphans,
            files=self._examine(looks),
        )

    @staticmethod
    def entry_keys(articles: Iterable[Article]) -> list[str]:
        """Every key and alt key ``write_files`` reads the stored entries of, for these
        articles (``keep_one_per_entry`` and ``assign_keys`` choose among them)."""
        return [k for a in articles for k in (a.key, a.alt_key)]

    def _examine(self, looks: Mapping[str, Look]) -> dict[str, OnDisk]:
        """The files at those paths that are there, read as far as asked.

        Without the posts folder (``Store.outbox``), the index is trusted: an indexed
        entry's file is there (written, or waiting in the outbox), and a wanted name is
        free unless an indexed path has its fold (``_gather``).
        """
        if self.store.outbox:
            return {path: OnDisk() for path, look in looks.items() if look is Look.EXISTS}
        files = self.store.files
        found: dict[str, OnDisk] = {}
        for path, look in looks.items():
            if not files.file_exists(path):
                continue
            if look is Look.EXISTS:
                found[path] = OnDisk()
            else:
                content = files.read_file(path) if look is Look.CONTENT else None
                found[path] = OnDisk(entry_id=files.entry_id_of(path), content=content)
        return found


def _outbox_items(plan: Plan, known: Known) -> tuple[OutboxItem, ...]:
    """A plan's deletes and writes as outbox rows, in the order a folder would see them."""
    owners = {e.path: e.uid for e in known.entries.values() if e.path}
    items = [OutboxItem(DELETE, path, owners[path]) for path in plan.deletes]
    written = {p.row.path: p for p in plan.rows if p.row.path in plan.writes}
    for path, text in plan.writes.items():
        planned = written[path]
        news = planned.change in (Change.NEW, Change.UPDATED)
        items.append(
            OutboxItem(WRITE, path, planned.row.uid, text, str(planned.change) if news else None)
        )
    return tuple(items)


def _changes(
    planned: Iterable[PlannedRow],
    writes: Mapping[str, str],
    deletes: Iterable[str],
    failures: Mapping[str, object],
    *,
    rebuild: bool,
) -> Changes:
    """What a carried-out plan changed, for the hooks: files written and deleted, and
    (for a poll, not a rebuild) the entries new or updated upstream."""
    entries = (
        ()
        if rebuild
        else tuple(
            EntryChange(
                kind=str(p.change),
                source=p.row.source,
                uid=p.row.uid,
                title=p.row.title,
                link=p.row.link,
                authors=p.row.authors,
                categories=p.row.categories,
                tags=p.row.tags,
                date=p.row.date,
                path=p.row.path,
            )
            for p in planned
            if p.change in (Change.NEW, Change.UPDATED) and p.row.path not in failures
        )
    )
    return Changes(
        written=tuple(path for path in writes if path not in failures),
        deleted=tuple(deletes),
        entries=entries,
    )
