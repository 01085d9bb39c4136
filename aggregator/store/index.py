"""The store: the index's write side (SQLAlchemy Core, SQLite or PostgreSQL) and the
article files.

With its helpers it is the only part of the package that touches disk: ``schema`` (the
tables), ``migrate`` (the schema's revisions, run at open), ``queries`` (the read side),
``logins`` (the admin's sessions), ``records`` (the rows), ``files`` (atomic article
files). Nothing else imports SQLAlchemy or writes a file.

Order of writes for one source: article files first (each by temp file + rename, so a
crash never leaves half a file), then one database transaction. A crash between the two
leaves a complete file the index does not know yet; the next poll finds it again by the
``entry_id`` in its front matter and adopts it instead of writing a namesake.

A damaged database file is refused when the store is opened (a quick integrity check,
bounded in time), so that nothing keeps writing into it; a fault of the disk under the
database or the posts folder while running is recorded in ``faults`` (see ``faults``).
Those are SQLite's: a PostgreSQL server minds its own files, and a lost connection to it
is a StoreError like any other database error (``dialects`` says what else differs).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.content.convert import fold_path
from aggregator.errors import LocalFaultError, StoreError
from aggregator.models import Status, list_to_json
from aggregator.redact import redact
from aggregator.store import claims, migrate, outbox
from aggregator.store.catalog import Catalog
from aggregator.store.dialects import (
    SQLITE,
    database_error,
    database_url,
    in_json,
    insert,
    insert_for,
    insert_ignore,
    make_engine,
)
from aggregator.store.faults import DATABASE, Faults, is_local_sqlite_fault
from aggregator.store.files import ArticleFiles
from aggregator.store.logins import Logins
from aggregator.store.outbox import DELETE, OutboxItem
from aggregator.store.queries import Queries, chunks
from aggregator.store.records import (
    EntryRow,
    FolderContents,
    HookRun,
    PollRecord,
    SourceStateUpdate,
    StoredEntry,
)
from aggregator.store.schema import (
    SCHEMA_VERSION,
    UTCDateTime,
    category_path,
    entries_table,
    hook_runs_table,
    kept,
    meta_table,
    polls_table,
    sources_table,
    sqlite_pragmas,
)

VERSION_RECHECK = 1.0  # seconds between reads of the content version by a reader
HOOK_HISTORY = 50  # hook runs and webhook deliveries kept
INTEGRITY_BUDGET = 5.0  # seconds the integrity check at open may take; larger files: partly
SQLITE_INTERRUPT = 9
DAMAGED_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


class Store(Queries, Logins, Catalog):
    """The index database and the article folder.

    Args:
        database: path of the SQLite file (created with its folder if missing), or a
            database URL (``sqlite:///path``, ``postgresql+psycopg://user@host/db``).
        posts_dir: the folder article files are written under.
        fsync: also flush each article file to the device before renaming it (slower,
            survives power loss, not just a crashed process).
        clock: the current UTC time, for the times of changes (tests move it).
        outbox: this process has no posts folder (``aggregator poller``): it never
            creates, lists or reads it; the article files a poll or prune writes and
            deletes go to the outbox, for the exporter (``store/outbox.py``).
        connections: on PostgreSQL, the pool's size (and as many again in a burst): the
            writer, the claim loop and the web threads each hold one while working.
    """

    def __init__(
        self,
        database: str,
        posts_dir: str,
        *,
        fsync: bool = False,
        clock: Callable[[], datetime] | None = None,
        outbox: bool = False,
        connections: int = 8,
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.outbox = outbox
        self.faults = Faults()
        self.files = ArticleFiles(posts_dir, fsync=fsync, faults=self.faults)
        self.database = database
        try:
            url = database_url(database)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        self.dialect = url.get_backend_name()
        #: The database as it may be shown: a path, or the URL without its password.
        self.shown = (url.database or "") if self.dialect == SQLITE else redact(str(url))
        self._local = threading.local()
        self._raw_connections: list[sqlite3.Connection] = []
        self._version = 0
        self._version_checked = -VERSION_RECHECK
        self._version_bumped = False
        self._change: tuple[int, datetime] | None = None  # this transaction's, once taken
        self._last_change_at = datetime.min.replace(tzinfo=UTC)
        self.changes = 0  # transactions this Store committed that changed entries
        self._lock = threading.RLock()
        # folder → what scan_folder found there, valid while the folder's mtime is the one
        # noted (only read and changed under ``_lock``).
        self._folders: dict[str, _Listing] = {}
        if self.dialect == SQLITE:
            assert url.database is not None
            self.database = url.database
            damage = find_damage(self.database)
            if damage is not None:
                raise StoreError(damaged_report(self.database, damage))
        # Made now, so that a posts folder that disappears later (an unmounted disk) is
        # noticed by health(), not taken for a fresh install.
        if not outbox:
            with suppress(OSError):
                self.files.posts_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = make_engine(url, connections=connections)
            if self.dialect == SQLITE:
                sa.event.listen(self.engine, "connect", sqlite_pragmas)
            # Creates the schema, or brings it up to date; another process opening the
            # database at the same time waits its turn (``migrate``).
            migrate.upgrade(self.engine)
            with self.engine.begin() as conn:
                for key, value in (
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("content_version", "0"),
                    ("changed_at", ""),
                ):
                    conn.execute(insert_ignore(conn, meta_table).values(key=key, value=value))
        except (OSError, SQLAlchemyError) as exc:
            message = f"cannot open the database {self.shown}: {exc}"
            raise StoreError(message if self.dialect == SQLITE else redact(message)) from exc

    def health(self) -> list[str]:
        """What keeps the store from working now: local write faults in force, a database
        that cannot be read, a posts folder that is gone or not writable (empty: fine).

        Cheap enough for every /healthz request: one small query and two stat calls (and,
        while the posts folder has a fault, one small write to see whether it is over).
        """
        self.files.recheck_fault()
        problems = self.faults.reasons()
        try:
            with self.reading() as conn:
                conn.execute(sa.select(meta_table.c.value).limit(1)).all()
        except StoreError as exc:
            problems.append(f"{DATABASE}: cannot be read: {exc}")
        folder = self.files.posts_dir
        if self.outbox:
            pass  # not this process's: the exporter's
        elif not folder.is_dir():
            problems.append(f"posts folder: {folder} is missing or not a folder")
        elif not os.access(folder, os.W_OK | os.X_OK):  # EROFS even for root
            problems.append(f"posts folder: {folder} is not writable")
        return problems

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database after a large batch of writes.

        SQLite would do it at the next commit anyway; doing it here, at the end of a
        poll that wrote many entries, keeps that cost out of the next, small, writes.
        PostgreSQL checkpoints by itself: nothing to do there.
        """
        if self.dialect != SQLITE:
            return
        with self.transaction() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Release the database connections and the writer threads."""
        self.files.close()
        for connection in self._raw_connections:
            connection.close()
        self._raw_connections.clear()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction; store errors come out as StoreError.

        Transactions are serialised within the process: a poll's files and rows are
        decided and written under one lock, so two sources that share a folder can never
        both claim one file name, and SQLite never sees two writers from us at once.
        """
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except BaseException as exc:
                # Rolled back: files written meanwhile have no row after all, so the
                # listings noted as up to date with them are not.
                self._folders.clear()
                if isinstance(exc, SQLAlchemyError):
                    raise self._database_error(exc) from exc
                raise
            else:
                if self._version_bumped:
                    # Entries were written: the database's fault, if any, is over. Not
                    # any write: a poll's small history row can fit where its entries did
                    # not, and the service would look well between two failing polls.
                    self.faults.clear(DATABASE)
            finally:
                if self._version_bumped:
                    # Committed (or not): the next reader reads the version again, even
                    # if one read it between the bump and the commit; counted after the
                    # commit, so a feed checked before it is checked again.
                    self._version_bumped = False
                    self._change = None
                    self._version_checked = -VERSION_RECHECK
                    self.changes += 1

    def _database_error(self, exc: SQLAlchemyError) -> StoreError:
        """A database error as a StoreError; a fault of the file or its disk is recorded."""
        cause = getattr(exc, "orig", None)
        if is_local_sqlite_fault(cause):
            message = f"database error: {cause}"
            self.faults.record(DATABASE, message)
            return LocalFaultError(message)
        return StoreError(database_error(exc, self.dialect))

    # -- reading -------------------------------------------------------------------------

    def stored_entries(
        self, conn: Connection, source: str, keys: Iterable[str]
    ) -> dict[str, StoredEntry]:
        """The stored state of those of ``keys`` that ``source`` has (with their recorded
        alt keys, which assigning keys reads)."""
        return self.stored_entries_of(conn, {source: keys})[source]

    def stored_entries_of(
        self, conn: Connection, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, StoredEntry]]:
        """``stored_entries`` of several sources (each with its own keys), in one query
        per chunk: the writer stores many small feeds' polls to a transaction, and one
        query each cost more than the rows they read."""
        keys = {source: set(its) for source, its in wanted.items()}
        found: dict[str, dict[str, StoredEntry]] = {source: {} for source in keys}
        every = sorted(set().union(*keys.values()))
        if not every:
            return found
        values = {"sources": json.dumps(sorted(keys)), "keys": json.dumps(every)}
        for r in conn.execute(_STORED_ENTRIES, values):
            if r.key in keys[r.source]:  # not another of the sources' key
                found[r.source][r.key] = _stored_entry(r)
        return found

    def paths_taken(self, conn: Connection, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` that an entry in the index already owns."""
        wanted = sorted(set(paths))
        t = entries_table
        taken: set[str] = set()
        for chunk in chunks(wanted):
            taken.update(conn.execute(sa.select(t.c.path).where(t.c.path.in_(chunk))).scalars())
        return taken

    def folds_taken(self, conn: Connection, folds: Iterable[str]) -> set[str]:
        """Those of ``folds`` (``fold_path``) that the path of an entry in the index has."""
        wanted = sorted(set(folds))
        if not wanted:
            return set()
        return set(conn.execute(_FOLDS_TAKEN, {"folds": json.dumps(wanted)}).scalars())

    def entries_for_rebuild(self, conn: Connection, source: str) -> list[tuple[str, str]]:
        """(key, raw_json) of every entry of ``source`` not pruned (dropped ones too:
        changed rules may let them in)."""
        t = entries_table
        rows = conn.execute(
            sa.select(t.c.key, t.c.raw_json).where(
                t.c.source == source, t.c.pruned_at.is_(None), t.c.raw_json.is_not(None)
            )
        )
        return [(r.key, r.raw_json) for r in rows]

    # -- writing -------------------------------------------------------------------------

    def take_change(self, conn: Connection) -> tuple[int, datetime]:
        """This transaction's change: its number in the change sequence and its time,
        for the entry rows it writes (``seq``, ``changed_at``); taken at its first write.

        The number is one more than the last committed one: the UPDATE takes SQLite's
        write lock (on PostgreSQL, this row's lock), held until the commit, so numbers
        follow the commit order in every process. (On PostgreSQL a SEQUENCE would not
        make writers wait on this row, but hands its numbers out before the commit: a
        later commit can carry a lower one, so there a reader would also need the
        snapshot's oldest running transaction.) The time never goes back within the
        process: a feed's Last-Modified follows it.
        """
        if self._change is not None:
            return self._change
        now = max(self.clock(), self._last_change_at)
        m = meta_table
        rows = conn.execute(
            sa.update(m)
            .where(m.c.key.in_(("content_version", "changed_at")))
            .values(
                value=sa.case(
                    (
                        m.c.key == "content_version",
                        sa.cast(sa.cast(m.c.value, sa.BigInteger) + 1, sa.String),
                    ),
                    else_=UTCDateTime().process_bind_param(now, None),
                )
            )
            .returning(m.c.key, m.c.value)
        )
        found: dict[str, str] = {row[0]: row[1] for row in rows}
        seq = int(found["content_version"])
        self._version_bumped = True
        self._last_change_at = now
        self._change = (seq, now)
        return self._change

    def content_version(self, *, fresh: bool = False) -> int:
        """A number that changes whenever published entries change.

        Writes through this Store are seen at once; writes by another process (``serve``
        beside a ``poll`` run from cron) within ``VERSION_RECHECK`` seconds, or at once
        with ``fresh`` (the static feeds' export, which runs right after another
        process's commit and only then: a version read a moment before would be stale).
        """
        now = time.monotonic()
        if not fresh and now - self._version_checked < VERSION_RECHECK:
            return self._version
        if self.dialect != SQLITE:
            # A pooled connection: no file to open, and the pool keeps it warm.
            with self.reading() as conn:
                found = conn.execute(_CONTENT_VERSION).scalar()
            self._version = int(found or 0)
            self._version_checked = now
            return self._version
        connection = getattr(self._local, "raw", None)
        if connection is None:
            # A plain sqlite3 connection per thread: this runs on every feed request.
            connection = sqlite3.connect(self.database, check_same_thread=False)
            self._local.raw = connection
            with self._lock:
                self._raw_connections.append(connection)
        row = connection.execute("SELECT value FROM meta WHERE key = 'content_version'").fetchone()
        self._version = int(row[0]) if row else 0
        self._version_checked = now
        return self._version

    def upsert_entries(self, conn: Connection, rows: Sequence[EntryRow]) -> None:
        """Insert new entries and update changed ones (matched on source + key)."""
        if not rows:
            return
        seq, now = self.take_change(conn)
        values = [{**_row_values(r), "seq": seq, "changed_at": now} for r in rows]
        conn.execute(_upsert_entries(conn.dialect.name, tuple(values[0])), values)

    def send(self, conn: Connection, items: Sequence[OutboxItem]) -> None:
        """Queue article files to write or delete for the exporter, in this transaction
        (``outbox`` stores: after the entry rows they belong to)."""
        if items:
            seq, now = self.take_change(conn)
            outbox.append(conn, items, seq, now)

    def touch_entries(
        self, conn: Connection, source: str, keys: Sequence[str], now: datetime
    ) -> None:
        """Record that unchanged entries were seen again."""
        if keys:
            conn.execute(
                _TOUCH_ENTRIES, {"of_source": source, "keys": json.dumps(keys), "now": now}
            )

    def record_polls(
        self, conn: Connection, records: Sequence[PollRecord], history: int = 50
    ) -> None:
        """Record polls and the sources' new state in one go; keep the last ``history``."""
        if not records:
            return
        conn.execute(sa.insert(polls_table), [_poll_values(r) for r in records])
        groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for record in records:
            row = record.state.columns()
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for columns, rows in groups.items():
            conn.execute(_upsert_states(conn.dialect.name, columns), rows)
        t = polls_table
        names = sorted({r.outcome.source for r in records})
        ranked = (
            sa.select(
                t.c.id,
                sa.func.row_number()
                .over(partition_by=t.c.source, order_by=t.c.id.desc())
                .label("rank"),
            )
            .where(t.c.source.in_(names))
            .subquery()
        )
        old = sa.select(ranked.c.id).where(ranked.c.rank > history)
        conn.execute(sa.delete(t).where(t.c.id.in_(old)))
        # Monotonic counters for /metrics (the history above is trimmed, these are not).
        totals = {
            "polls_total": len(records),
            "poll_errors_total": sum(1 for r in records if not r.outcome.ok),
            "polls_not_modified_total": sum(1 for r in records if r.outcome.not_modified),
            "poll_seconds_total_ms": round(sum(r.outcome.duration for r in records) * 1000),
        }
        self._add_counters(conn, totals)

    def _add_counters(self, conn: Connection, amounts: Mapping[str, int]) -> None:
        m = meta_table
        statement = insert(conn, m)
        # 64-bit: on PostgreSQL an INTEGER is 32 (the milliseconds polled overflow it in
        # weeks); SQLite's are 64 whatever the name.
        added = sa.cast(m.c.value, sa.BigInteger) + sa.cast(statement.excluded.value, sa.BigInteger)
        statement = statement.on_conflict_do_update(
            index_elements=[m.c.key], set_={"value": sa.cast(added, sa.String)}
        )
        conn.execute(statement, [{"key": k, "value": str(v)} for k, v in amounts.items()])

    def record_hook_run(self, run: HookRun, history: int = HOOK_HISTORY) -> None:
        """Record a hook run or webhook delivery; keep the last ``history``."""
        t = hook_runs_table
        with self.transaction() as conn:
            conn.execute(sa.insert(t).values(asdict(run)))
            newest = sa.select(t.c.id).order_by(t.c.id.desc()).limit(history)
            conn.execute(sa.delete(t).where(t.c.id.not_in(newest.scalar_subquery())))

    def set_status(self, name: str, url: str, status: str, reason: str | None) -> None:
        """Pause or resume a source by hand (its next poll time is cleared).

        Raises:
            ValueError: ``status`` is not a ``models.Status``.
        """
        update = SourceStateUpdate(
            name=name,
            url=url,
            status=Status(status),
            reason=reason,
            failures=0,
            next_poll_at=None,
        )
        with self.transaction() as conn:
            self.save_state(conn, update)
            claims.hold(conn, name)  # a poll in flight, in any process, leaves it so

    def request_poll(self, name: str, url: str, now: datetime) -> None:
        """A refresh: the source is polled at any poller's next claim, even if paused or
        gone (``claims.request``)."""
        with self.transaction() as conn:
            claims.request(conn, name, url, now)

    def save_state(self, conn: Connection, update: SourceStateUpdate) -> None:
        """Insert or update a source's state row; columns left as ``KEEP`` stay as stored."""
        values = update.columns()
        statement = insert(conn, sources_table).values(values)
        values.pop("name")
        conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))

    def scan_folder(self, conn: Connection, folder: str) -> FolderContents:
        """What is in a source's folder that no index row points at: the article files
        (by entry_id), and the folds of all names.

        An unindexed article file was written by a run that was killed before its index
        commit (or put there by hand, then it has no entry_id and is left alone). The
        next run adopts it by its entry_id even when the entry's title, and so its
        would-be name, has changed since. Every other name counts too: a new article's
        name must not fold (``fold_path``) to that of someone's page or folder. (Those of
        indexed files are the index's: ``folds_taken``.)

        Listed once and then kept while the folder's mtime stays the one noted: a folder
        of thousands of articles is otherwise listed, and each name looked up in the
        index, by every poll that brings a new entry (quadratic in a cold pass). Our own
        writes keep the listing current (``folder_written``); anyone else's change moves
        the mtime, and the folder is listed again.
        """
        if self.outbox:
            return FolderContents({}, frozenset())  # no folder here: the index alone
        directory = self.files.posts_dir / folder
        try:
            mtime = directory.stat().st_mtime_ns
        except OSError:
            self._folders.pop(folder, None)
            return FolderContents({}, frozenset())
        cached = self._folders.get(folder)
        if cached is not None and cached.mtime == mtime:
            return cached.contents()
        names: list[tuple[str, bool]] = []  # (path, is a folder)
        try:
            with os.scandir(directory) as found:
                for item in found:
                    if not item.name.startswith("."):  # hidden: Hexo, Hugo and Jekyll skip it
                        names.append((f"{folder}/{item.name}", item.is_dir()))
        except OSError:
            self._folders.pop(folder, None)
            return FolderContents({}, frozenset())
        articles = [path for path, is_dir in names if not is_dir and path.endswith(".md")]
        known = self.paths_taken(conn, articles) if articles else set()
        listing = _Listing(mtime, {})
        for path, is_dir in names:
            if path in known:
                continue
            uid = self.files.entry_id_of(path) if not is_dir and path.endswith(".md") else None
            listing.unindexed[path] = (is_dir, uid)
        self._folders[folder] = listing
        return listing.contents()

    def folder_written(self, folder: str, settled: Iterable[str], failed: bool) -> None:
        """Note our own change to a folder that ``scan_folder`` listed: ``settled`` are
        the paths this transaction gives rows to (written or adopted files) or deleted;
        after ``failed`` writes the folder is simply listed again next time.

        Called under the transaction that writes those rows; a rollback forgets every
        listing (``transaction``).
        """
        listing = self._folders.get(folder)
        if listing is None:
            return
        if failed:
            del self._folders[folder]
            return
        for path in settled:
            listing.unindexed.pop(path, None)
        try:
            listing.mtime = (self.files.posts_dir / folder).stat().st_mtime_ns
        except OSError:
            del self._folders[folder]

    def prune(
        self,
        conn: Connection,
        source: str,
        keep_days: int | None,
        keep_max: int | None,
        now: datetime,
        deleted: list[str] | None = None,
    ) -> int:
        """Apply retention to a source: delete the files, remember the entries as pruned.

        ``deleted``, if given, is extended with the paths of the files deleted.

        Returns:
            How many entries were pruned.
        """
        if keep_days is None and keep_max is None:
            return 0  # no retention: nothing to ask (a small feed's poll is cheap)
        t = entries_table
        live = sa.and_(t.c.source == source, kept())
        doomed: list[tuple[int, str | None, str]] = []
        if keep_days is not None:
            cutoff = datetime.fromtimestamp(now.timestamp() - keep_days * 86400, UTC)
            doomed += [
                (r.id, r.path, r.uid)
                for r in conn.execute(
                    sa.select(t.c.id, t.c.path, t.c.uid).where(live, t.c.date < cutoff)
                )
            ]
        if keep_max is not None:
            doomed += [
                (r.id, r.path, r.uid)
                for r in conn.execute(
                    sa.select(t.c.id, t.c.path, t.c.uid)
                    .where(live)
                    .order_by(t.c.date.desc(), t.c.id.desc())
                    .offset(keep_max)
                )
            ]
        ids = sorted({i for i, _, _ in doomed})
        seq, changed = self.take_change(conn) if ids else (0, now)
        gone = {path: uid for _, path, uid in doomed if path}
        if self.outbox:
            self.send(conn, [OutboxItem(DELETE, path, uid) for path, uid in gone.items()])
        else:
            for path in gone:
                self.files.delete_file(path)
        if deleted is not None:
            deleted.extend(gone)
        for start in range(0, len(ids), 500):
            conn.execute(
                sa.update(t)
                .where(t.c.id.in_(ids[start : start + 500]))
                .values(
                    pruned_at=now,
                    path=None,
                    path_fold=None,
                    body_html=None,
                    raw_json=None,
                    summary=None,
                    file_hash=None,
                    seq=seq,
                    changed_at=changed,
                )
            )
        return len(ids)


def find_damage(database: str, budget: float = INTEGRITY_BUDGET) -> str | None:
    """Run SQLite's quick integrity check on an existing database file.

    Garbage in the middle of the file once went unnoticed: polls kept writing into it and
    every page answered 500. ``PRAGMA quick_check`` reads every page (O(N), without the
    index cross-checks of ``integrity_check``); it is interrupted after ``budget``
    seconds, so a very large file is checked only in part rather than delaying start-up.

    Returns:
        What is damaged (SQLite's first findings), or None: fine, not checked through,
        or no file yet.
    """
    if not Path(database).is_file():
        return None
    deadline = time.monotonic() + budget
    connection = sqlite3.connect(database, timeout=30)
    try:
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        rows = connection.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in DAMAGED_CODES:
            return str(exc)
        if code == SQLITE_INTERRUPT:
            return None  # out of time: checked in part, and that part was readable
        raise StoreError(f"cannot open the database {database}: {exc}") from exc
    finally:
        connection.close()
    findings = [str(r[0]) for r in rows]
    return None if findings == ["ok"] else "; ".join(findings)


def damaged_report(database: str, damage: str) -> str:
    """Why the store refuses a damaged database, and how to recover."""
    return (
        f"the database {database} is damaged ({damage}); nothing was written to it.\n"
        "To recover, restore it from a backup, or salvage what SQLite can still read:\n"
        f'  sqlite3 {database} ".recover" | sqlite3 {database}.recovered\n'
        f"  mv {database} {database}.damaged && mv {database}.recovered {database}\n"
        "or move it away to start a new index: the article files in posts_dir are kept, and\n"
        "the next poll indexes again those its feeds still carry (recognised by entry_id)."
    )


def _stored_entry(r: Any) -> StoredEntry:
    """A row of ``_STORED_ENTRIES``, typed."""
    return StoredEntry(
        id=r.id,
        key=r.key,
        uid=r.uid,
        path=r.path,
        raw_hash=r.raw_hash,
        file_hash=r.file_hash,
        render_key=r.render_key,
        first_seen=r.first_seen,
        pruned=r.pruned_at is not None,
        dropped_by=r.dropped_by,
        alt_key=r.alt_key,
    )


def _row_values(row: EntryRow) -> dict[str, Any]:
    return {
        "source": row.source,
        "key": row.key,
        "alt_key": row.alt_key,
        "uid": row.uid,
        "path": row.path,
        "title": row.title,
        "link": row.link,
        "author": row.author,
        "authors": list_to_json(row.authors),
        "enclosures": list_to_json(row.enclosures),
        "categories": json.dumps(list(row.categories), ensure_ascii=False),
        "tags": json.dumps(list(row.tags), ensure_ascii=False),
        "headimg": row.headimg,
        "summary": row.summary,
        "body_html": row.body_html,
        "published": row.published,
        "updated": row.updated,
        "date": row.date,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "raw_json": row.raw_json,
        "raw_hash": row.raw_hash,
        "file_hash": row.file_hash,
        "render_key": row.render_key,
        "pruned_at": None,
        "dropped_by": row.dropped_by,
        "dropped_at": row.dropped_at,
        "category_path": category_path(row.categories),
        "path_fold": fold_path(row.path) if row.path else None,
    }


def _poll_values(record: PollRecord) -> dict[str, Any]:
    outcome = record.outcome
    return {
        "source": outcome.source,
        "started_at": record.started,
        "duration": outcome.duration,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "failed": outcome.failed,
        "dropped": outcome.dropped,
        "error": outcome.error,
        "warnings": json.dumps(list(outcome.warnings), ensure_ascii=False),
        "url": outcome.url,
        "http_status": outcome.http_status,
        "bytes": outcome.bytes,
        "not_modified": outcome.not_modified,
        "moved_to": outcome.moved_to,
    }


@dataclass(slots=True)
class _Listing:
    """A folder as ``scan_folder`` last listed it: its mtime then, and each name that no
    index row points at (is it a folder, its entry_id if it is an article file)."""

    mtime: int
    unindexed: dict[str, tuple[bool, str | None]]

    def contents(self) -> FolderContents:
        orphans = {uid: path for path, (_, uid) in self.unindexed.items() if uid is not None}
        folds = frozenset(
            fold_path(path, extension=not is_dir) for path, (is_dir, _) in self.unindexed.items()
        )
        return FolderContents(orphans, folds)


# Built once per set of columns: making an upsert construct costs more than running it
# for a small feed's few rows.
@functools.lru_cache(maxsize=16)
def _upsert_entries(dialect: str, columns: tuple[str, ...]) -> sa.Insert:
    """Insert entries, or update those stored (matched on source + key)."""
    t = entries_table
    statement = insert_for(dialect, t)
    keep = {"first_seen", "uid", "source", "key", "alt_key"}
    changes: dict[str, Any] = {c: statement.excluded[c] for c in columns if c not in keep}
    # When it was first dropped stays; a kept entry has no drop time.
    changes["dropped_at"] = sa.case(
        (statement.excluded.dropped_by.is_(None), None),
        else_=sa.func.coalesce(t.c.dropped_at, statement.excluded.dropped_at),
    )
    return statement.on_conflict_do_update(index_elements=[t.c.source, t.c.key], set_=changes)


@functools.lru_cache(maxsize=64)
def _upsert_states(dialect: str, columns: tuple[str, ...]) -> sa.Insert:
    """Insert or update sources' state rows, setting ``columns``."""
    statement = insert_for(dialect, sources_table)
    return statement.on_conflict_do_update(
        index_elements=["name"],
        set_={c: statement.excluded[c] for c in columns if c != "name"},
    )


# A poll's reads and writes of its own entries, built once: a small feed's poll is a few
# rows, and building and keying a statement afresh cost more than running it.
_e = entries_table
_STORED_ENTRIES = sa.select(
    _e.c.id,
    _e.c.key,
    _e.c.uid,
    _e.c.path,
    _e.c.raw_hash,
    _e.c.file_hash,
    _e.c.render_key,
    _e.c.first_seen,
    _e.c.pruned_at,
    _e.c.dropped_by,
    _e.c.alt_key,
    _e.c.source,
).where(in_json(_e.c.source, "sources"), in_json(_e.c.key, "keys"))
_FOLDS_TAKEN = sa.select(_e.c.path_fold).where(in_json(_e.c.path_fold, "folds")).distinct()
_TOUCH_ENTRIES = (
    sa.update(_e)
    .where(_e.c.source == sa.bindparam("of_source"), in_json(_e.c.key, "keys"))
    .values(last_seen=sa.bindparam("now"))
)
_CONTENT_VERSION = sa.select(meta_table.c.value).where(meta_table.c.key == "content_version")
