"""Poll sources: fetch → parse → convert → store, recording every outcome.

The CPU-heavy part (parse and clean) is a pure function, ``prepare``, run in a process
pool when there is more than one source and more than one core. The main process keeps
the I/O: fetching (threads), deciding what changed, writing files and the index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import UTC, datetime

from aggregator.config import Config, SourceConfig
from aggregator.content.fulltext import Page
from aggregator.errors import FetchError, LocalFaultError, StoreError
from aggregator.models import Changes, Counts, SourceOutcome, Status
from aggregator.poll.fetch import Fetcher
from aggregator.poll.ingest import Applied, Ingest
from aggregator.poll.leases import PassLeases
from aggregator.poll.outcome import Answer, Attempt, Validators, poll_record, rebuild_outcome
from aggregator.poll.pages import PagesDone, update_pages
from aggregator.poll.policy import Policy, feed_hints
from aggregator.poll.resolve import ResolvedSource, resolve_source, resolve_sources
from aggregator.poll.worker import (
    InlineExecutor,
    LazyProcessPool,
    Prepared,
    make_executor,
    prepare,
    prepare_stored,
)
from aggregator.redact import redact, without_credentials
from aggregator.store import Store, claims
from aggregator.store.pages import (
    PageResult,
    StoredPage,
    forget_pages,
    load_pages,
    record_results,
)
from aggregator.store.records import KEEP, PollRecord, SourceState, SourceStateUpdate

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECORD_BATCH = 64  # polls written per transaction by Poller.poll_sources
CHECKPOINT_AFTER = 500  # entries written by one poll pass before the WAL is folded in


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Poller:
    """Runs polls, rebuilds and prunes for a configuration.

    Args:
        config: the validated configuration.
        store: where articles and the index go.
        clock: returns the current UTC time (tests fix it).
        workers: processes for parsing and cleaning; 0 means one per CPU.
        rng: the random source for jitter (tests seed it).
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Clock = utcnow,
        workers: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        settings = config.settings
        self.workers = workers if workers is not None else settings.workers
        if self.workers <= 0:
            self.workers = os.cpu_count() or 1
        # Each source's settings, resolved once (a new configuration makes a new Poller).
        self.sources = resolve_sources(config)
        self.ingest = Ingest(store)
        self.fetcher = Fetcher(
            settings.fetch.timeout,
            settings.fetch.max_bytes,
            settings.fetch.user_agent,
            per_host=settings.schedule.per_host,
            block_private=settings.fetch.block_private_addresses,
            file_roots=settings.fetch.file_roots,
        )
        schedule = settings.schedule
        self.policy = Policy(
            interval=schedule.interval,
            floor=schedule.floor,
            ceiling=schedule.ceiling,
            jitter=schedule.jitter,
            backoff_cap=schedule.backoff_cap,
            max_failures=schedule.max_failures,
        )
        self.rng = rng or random.Random()
        self._recorder = GroupRecorder(self._record)

    def close(self) -> None:
        """Release the HTTP connections."""
        self.fetcher.close()

    def resolved(self, source: SourceConfig) -> ResolvedSource:
        """A source's settings under this configuration.

        A source that is not the configuration's own (edited since) is resolved afresh.
        """
        resolved = self.sources.get(source.key)
        if resolved is None or resolved.config != source:
            return resolve_source(self.config, source)
        return resolved

    # -- polling -------------------------------------------------------------------------

    def poll_sources(
        self,
        sources: Iterable[SourceConfig],
        on_done: Callable[[SourceOutcome], None] | None = None,
        *,
        manual: bool = False,
        leases: PassLeases | None = None,
    ) -> list[SourceOutcome]:
        """Poll each source once, ``concurrency`` at a time; failures are recorded, not raised.

        Args:
            sources: the sources to poll.
            on_done: called with each outcome as it completes (progress bars).
            manual: a user asked for these polls: paused and gone sources are polled too.
            leases: poll each source only under its lease (``aggregator poll``; the
                caller closes them): one another poller holds is skipped, as ``held``.

        Returns:
            The outcomes, in the order of ``sources``.
        """
        sources = list(sources)
        if not sources:
            return []
        states = self.store.load_states(s.key for s in sources)
        concurrency = min(self.config.settings.schedule.concurrency, len(sources))
        outcomes: dict[str, SourceOutcome] = {}
        with (
            make_executor(self.workers, len(sources)) as pool,
            ThreadPoolExecutor(concurrency, thread_name_prefix="poll") as threads,
        ):
            futures: list[Future[PollRecord | SourceOutcome]] = []
            pending: list[PollRecord] = []
            page_passes: list[Future[PagesDone]] = []
            by_name = {s.key: s for s in sources}

            def flush() -> None:
                if not pending:
                    return
                tokens = [leases.token(r.outcome.source) for r in pending] if leases else None
                self._record(pending, tokens)
                for record in pending:
                    outcomes[record.outcome.source] = record.outcome
                    if on_done is not None:
                        on_done(record.outcome)
                pending.clear()

            try:
                # Submitted inside the ``try``: a signal between two submits must still
                # record the polls already started.
                for source in sources:
                    state = states.get(source.key)
                    if leases is None:
                        futures.append(
                            threads.submit(self._poll_guarded, source, state, pool, manual)
                        )
                    else:
                        futures.append(
                            threads.submit(self._poll_leased, source, state, pool, manual, leases)
                        )
                for done, future in enumerate(as_completed(futures), start=1):
                    result = future.result()
                    if isinstance(result, PollRecord):
                        pending.append(result)
                        # Full text: the source's pages, now that its entries are stored,
                        # beside the other sources' polls (the same bounded threads); its
                        # record is written without waiting for them.
                        source = by_name[result.outcome.source]
                        if self.resolved(source).full_text:
                            page_passes.append(threads.submit(self.update_pages, source, pool))
                    else:
                        outcomes[result.source] = result
                        if on_done is not None:
                            on_done(result)
                    # Recorded in batches: one transaction for many polls (a warm poll of
                    # hundreds of 304s is otherwise all transaction overhead).
                    if len(pending) >= RECORD_BATCH or done == len(futures):
                        flush()
                for page_pass in page_passes:
                    # The files a page pass rewrote are this pass's changes too (hooks).
                    pages = page_pass.result()
                    outcome = outcomes[pages.source]
                    outcomes[pages.source] = replace(
                        outcome, changes=outcome.changes + pages.changes
                    )
            except BaseException:
                # Interrupted (a signal, Ctrl-C): start no more polls, let those in flight
                # end (their fetch timeouts bound it), and record every poll that ended.
                threads.shutdown(wait=True, cancel_futures=True)
                pending[:] = _unrecorded(futures, outcomes)
                flush()
                raise
        if sum(o.new + o.updated for o in outcomes.values()) >= CHECKPOINT_AFTER:
            self.store.checkpoint()
        return [outcomes[s.key] for s in sources]

    def poll_source(
        self,
        source: SourceConfig,
        pool: Executor | None = None,
        *,
        manual: bool = False,
        lease: str | None = None,
    ) -> SourceOutcome:
        """Poll one source: conditional fetch, parse only what changed, store, record.

        Args:
            source: the source.
            pool: where to parse and clean (a process pool); inline when None.
            manual: poll even a paused or gone source (a refresh asked for by a user).
            lease: the claim's token (``store/claims.py``): the record clears the lease,
                and writes the source's state only while the lease is still this one's.
        """
        result = self._poll_guarded(source, self.store.load_state(source.key), pool, manual)
        if isinstance(result, PollRecord):
            self._recorder.record(result, lease)
            return result.outcome
        return result

    def refuse(
        self, source: SourceConfig, reason: str, *, lease: str | None = None
    ) -> SourceOutcome:
        """Record a poll this process must not make as the source's failure, without
        fetching (its secret fetch options are not in this process's config).

        Args:
            source: the source as the index has it.
            reason: the error recorded and shown.
            lease: the claim's token, ended by the record.
        """
        state = self.store.load_state(source.key)
        attempt = Attempt(self.clock(), error=reason)
        record = poll_record(self.policy, source, state, attempt, rng=self.rng, duration=0.0)
        # The settings it ran under are the synced ones, not this copy without secrets:
        # its fingerprint is not recorded (it would read as a change of settings).
        record = replace(record, state=replace(record.state, config_hash=KEEP))
        self._recorder.record(record, lease)
        return record.outcome

    def _poll_leased(
        self,
        source: SourceConfig,
        state: SourceState | None,
        pool: Executor | None,
        manual: bool,
        leases: PassLeases,
    ) -> PollRecord | SourceOutcome:
        """``_poll_guarded`` under the source's lease (skipped when another holds it)."""
        try:
            held = leases.take(source.key) is None
        except StoreError as exc:
            return SourceOutcome(source=source.key, url=source.url, error=f"cannot claim it: {exc}")
        if held:
            status = state.status if state is not None else Status.NEW
            return SourceOutcome(
                source=source.key, url=source.url, status=status, skipped=True, held=True
            )
        return self._poll_guarded(source, state, pool, manual)

    def _poll_guarded(
        self,
        source: SourceConfig,
        state: SourceState | None,
        pool: Executor | None,
        manual: bool,
    ) -> PollRecord | SourceOutcome:
        """Poll without recording: a PollRecord to write, or the outcome of a skip.

        Whatever goes wrong becomes a recorded failure of this source (and its backoff),
        never an exception that would lose the other sources' results.
        """
        started = self.clock()
        clock_start = time.perf_counter()

        def record(attempt: Attempt) -> PollRecord:
            duration = time.perf_counter() - clock_start
            return poll_record(self.policy, source, state, attempt, rng=self.rng, duration=duration)

        try:
            attempt = self._fetch_and_store(source, state, pool, manual, started)
            return attempt if isinstance(attempt, SourceOutcome) else record(attempt)
        except Exception as exc:  # a bug or a dead worker: recorded like any failure
            log.exception("poll source=%s failed unexpectedly", source.key)
            if isinstance(exc, BrokenProcessPool) and isinstance(pool, LazyProcessPool):
                pool.reset()  # a worker died (e.g. out of memory): start afresh next time
            return record(Attempt(started, error=f"internal error: {type(exc).__name__}: {exc}"))

    def _fetch_and_store(
        self,
        source: SourceConfig,
        state: SourceState | None,
        pool: Executor | None,
        manual: bool,
        started: datetime,
    ) -> Attempt | SourceOutcome:
        """Fetch, parse only what changed, store: what the poll did (or a skip's outcome)."""
        fingerprint = source.fingerprint()
        changed = state is not None and state.config_hash not in (None, fingerprint)
        if (
            state is not None
            and state.status in (Status.PAUSED, Status.GONE)
            and not (manual or changed)
        ):
            return SourceOutcome(
                source=source.key, url=source.url, status=state.status, skipped=True
            )
        resolved = self.resolved(source)
        # The stored validators apply to the same settings, processed the same way: after
        # an upgrade or a change of render settings, a 304 would keep the old articles.
        conditional = state is not None and not changed and state.render_key == resolved.render_key
        try:
            fetched = self.fetcher.fetch(
                source.url,
                etag=state.etag if state and conditional else None,
                last_modified=state.last_modified if state and conditional else None,
                options=resolved.fetch,
            )
        except FetchError as exc:
            return Attempt(
                started, error=str(exc), http_status=exc.status, retry_after=exc.retry_after
            )
        answer = Answer(fetched.status, len(fetched.body), fetched.moved_to)
        body_hash = hashlib.sha1(fetched.body + resolved.render_key.encode()).hexdigest()
        if fetched.not_modified or (conditional and state and state.body_hash == body_hash):
            return Attempt(
                started,
                answer=answer,
                not_modified=True,
                # Not parsed: the feed's own <ttl>/sy: hint is the one stored last time.
                hints=replace(
                    feed_hints(None, None, None, fetched.headers),
                    ttl=state.feed_hint if state is not None else None,
                ),
            )
        job = (pool or InlineExecutor()).submit(
            prepare,
            resolved.view,
            without_credentials(fetched.url),  # the final URL: the base of relative links
            fetched.body,
            fetched.headers,
            now=started,
        )
        prepared = job.result()
        stored, error, fault = self._store(resolved, prepared, started)
        return Attempt(
            started,
            counts=prepared_counts(prepared) + stored,
            error=error,
            fault=fault,
            answer=answer,
            hints=prepared.hints,
            feed_title=prepared.feed_title,
            validators=Validators(
                fetched.headers.get("etag"),
                fetched.headers.get("last-modified"),
                body_hash,
                resolved.render_key,
            ),
        )

    # -- full text -----------------------------------------------------------------------

    def update_pages(
        self,
        source: SourceConfig,
        pool: Executor | None = None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> PagesDone:
        """Fetch the pages a full-text source's entries still need and use them
        (``poll/pages.py``); a failure is logged and reported, never raised."""
        try:
            return update_pages(
                self.store,
                self.ingest,
                self.fetcher,
                self.resolved(source),
                self.clock(),
                pool,
                should_stop=should_stop,
            )
        except Exception as exc:  # a bug must not stop the other sources' passes
            log.exception("pages source=%s failed unexpectedly", source.key)
            return PagesDone(source.key, error=f"internal error: {type(exc).__name__}: {exc}")

    def refetch(self, source: SourceConfig, pool: Executor | None = None) -> PagesDone:
        """Forget a source's stored pages and fetch every kept entry's page again."""
        with self.store.transaction() as conn:
            forget_pages(conn, source.key)
        total = PagesDone(source.key)
        while True:
            done = self.update_pages(source, pool)
            total = PagesDone(
                source.key,
                total.fetched + done.fetched,
                total.from_page + done.from_page,
                total.from_feed + done.from_feed,
                done.error,
                total.changes + done.changes,
            )
            # Every pass stores a row for each page it asked for: the work shrinks.
            if done.error is not None or done.fetched == 0:
                return total

    def _store(
        self, source: ResolvedSource, prepared: Prepared, now: datetime
    ) -> tuple[Counts, str | None, str | None]:
        """Write a parsed document's articles and apply retention, in one transaction.

        Returns:
            What was done (what was decided before a failure still counts), the index's
            error, and our storage's fault, if any.
        """
        if prepared.error is not None:
            return Counts(), prepared.error, None
        applied: Applied | None = None
        pruned = 0
        deleted: list[str] = []
        error = fault = None
        try:
            with self.store.transaction() as conn:
                applied = self.ingest.write_files(conn, source, prepared.articles, now)
                self.ingest.write_rows(conn, applied)
                pruned = self.store.prune(
                    conn, source.name, source.keep_days, source.keep_max, now, deleted
                )
        except LocalFaultError as exc:
            fault = str(exc)
        except StoreError as exc:
            error = str(exc)
        counts = applied.counts if applied is not None else Counts()
        return (
            counts + Counts(dropped=pruned, changes=Changes(deleted=tuple(deleted))),
            error,
            fault,
        )

    def _record(
        self, records: list[PollRecord], leases: Sequence[str | None] | None = None
    ) -> None:
        """Write polls and states in one transaction, and log one line per poll.

        With a lease (claimed polls), the claim ends here; a claim that lost its lease
        records its history, not its state (a newer claim's poll owns that now).
        """
        try:
            with self.store.transaction() as conn:
                kept: list[PollRecord] = []
                for record, lease in zip(records, leases or [None] * len(records), strict=True):
                    state = record.state
                    if lease is not None and not claims.release(conn, state.name, lease):
                        log.warning(
                            "source=%s lease lost; state left to the newer claim", state.name
                        )
                        record = replace(record, state=SourceStateUpdate(state.name, state.url))
                    kept.append(record)
                records = kept
                self.store.record_polls(conn, records, self.config.settings.schedule.history)
        except StoreError as exc:
            log.error("cannot record %d polls: %s", len(records), exc)
        if log.isEnabledFor(logging.INFO):
            for record in records:
                log.info("poll %s", logfmt(record.outcome))

    # -- rebuild and prune ---------------------------------------------------------------

    def rebuild(
        self,
        sources: Iterable[SourceConfig],
        on_done: Callable[[SourceOutcome], None] | None = None,
    ) -> list[SourceOutcome]:
        """Clean and render every stored entry again from its raw original.

        Files whose bytes do not change are not rewritten.
        """
        resolved = [self.resolved(s) for s in sources]
        outcomes: list[SourceOutcome] = []
        now = self.clock()
        with make_executor(self.workers, len(resolved)) as pool:
            jobs: list[tuple[ResolvedSource, list[str], Future[Prepared]]] = []
            for source in resolved:
                with self.store.transaction() as conn:
                    stored = self.store.entries_for_rebuild(conn, source.name)
                    kept = load_pages(conn, source.name, [k for k, _ in stored])
                keys = [k for k, _ in stored]
                # Full text: the stored pages are extracted again, never fetched.
                pages = [_stored_page(kept.get(k)) if source.full_text else None for k in keys]
                future = pool.submit(
                    prepare_stored,
                    source.view,
                    [r for _, r in stored],
                    now,
                    pages,
                    source.full_text_selector,
                )
                jobs.append((source, keys, future))
            for source, keys, future in jobs:
                prepared = future.result()
                results = [
                    PageResult(keys[i], a.body_from, a.body_note, a.raw_hash)
                    for i, a in zip(prepared.indices, prepared.articles, strict=True)
                ]
                applied: Applied | None = None
                error = None
                try:
                    with self.store.transaction() as conn:
                        applied = self.ingest.write_files(
                            conn,
                            source,
                            prepared.articles,
                            now,
                            keys=[keys[i] for i in prepared.indices],
                            force=True,
                        )
                        self.ingest.write_rows(conn, applied)
                        if source.full_text:
                            record_results(conn, source.name, results)
                except StoreError as exc:
                    error = str(exc)
                counts = prepared_counts(prepared)
                if applied is not None:
                    counts += applied.counts
                outcome = rebuild_outcome(source.name, counts, error)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        return outcomes

    def prune(self, sources: Iterable[SourceConfig]) -> dict[str, int]:
        """Apply each source's retention now; returns how many entries each lost."""
        pruned: dict[str, int] = {}
        now = self.clock()
        for source in map(self.resolved, sources):
            with self.store.transaction() as conn:
                pruned[source.name] = self.store.prune(
                    conn, source.name, source.keep_days, source.keep_max, now
                )
        return pruned


class GroupRecorder:
    """Writes the records of single polls (``aggregator run``'s jobs), several to a
    transaction when they end together: a group commit.

    A poll's thread returns once its record is written. The first to arrive writes what
    is waiting; those that arrive meanwhile wait, and the next of them writes all of
    theirs in one transaction. Alone, a poll writes its own at once (no delay is added).
    """

    def __init__(self, write: Callable[[list[PollRecord], list[str | None]], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: list[tuple[PollRecord, str | None]] = []
        self._issued = 0  # tickets handed out
        self._written = 0  # every ticket up to this one is written
        self._writing = False

    def record(self, record: PollRecord, lease: str | None = None) -> None:
        """Write ``record`` (in a batch with others waiting), ending its claim's
        ``lease`` if it has one, then return."""
        with self._cond:
            self._issued += 1
            ticket = self._issued
            self._pending.append((record, lease))
            while self._written < ticket:
                if self._writing:
                    self._cond.wait()
                    continue
                batch, self._pending = self._pending, []
                last = self._issued
                self._writing = True
                self._cond.release()
                try:
                    self._write([r for r, _ in batch], [lease for _, lease in batch])
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._written = last
                    self._cond.notify_all()


def _stored_page(stored: StoredPage | None) -> Page | str | None:
    """A stored page as ``prepare_stored`` takes it: the page, why there is none, or None
    (no page fetched yet: the feed's body)."""
    if stored is None:
        return None
    return stored.page or stored.error or "fetch failed"


def prepared_counts(prepared: Prepared) -> Counts:
    """What parsing and converting a document already tells of its entries."""
    return Counts(failed=prepared.failed, warnings=prepared.warnings)


def _unrecorded(
    futures: list[Future[PollRecord | SourceOutcome]], outcomes: dict[str, SourceOutcome]
) -> list[PollRecord]:
    """The polls among ``futures`` that ended, with a record not yet in ``outcomes``."""
    ended = (f.result() for f in futures if f.done() and not f.cancelled() and not f.exception())
    return [r for r in ended if isinstance(r, PollRecord) and r.outcome.source not in outcomes]


def logfmt(outcome: SourceOutcome) -> str:
    """One poll as one structured log line (logfmt: key=value, values quoted when needed)."""
    fields: dict[str, object] = {
        "source": outcome.source,
        "status": outcome.status,
        "http": outcome.http_status if outcome.http_status is not None else "-",
        "bytes": outcome.bytes,
        "ms": round(outcome.duration * 1000),
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "failed": outcome.failed,
        "dropped": outcome.dropped,
        "not_modified": str(outcome.not_modified).lower(),
        "next": outcome.next_poll_at.isoformat(timespec="seconds") if outcome.next_poll_at else "-",
    }
    if outcome.moved_to:
        fields["moved_to"] = redact(outcome.moved_to)
    if outcome.error:
        fields["error"] = outcome.error
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def iter_enabled(config: Config, only: str | None = None) -> Iterator[SourceConfig]:
    """The enabled sources, or just the named one (enabled or not)."""
    for source in config.sources:
        if only is not None:
            if source.key == only:
                yield source
        elif source.enabled:
            yield source
