"""Poll sources: fetch → parse → convert → store, recording every outcome.

The CPU-heavy part (parse, clean, render) is a pure function, ``prepare``, run in a
process pool when there is more than one source and more than one core. The main process
keeps the I/O: fetching (threads), deciding what changed, writing files and the index.
A pass over many sources is a pipeline (``Poller.poll_sources``), and the writer stores
and records many polls to a transaction (``Poller._write``), retrying a failed batch one
poll at a time; ``poll/batch.py`` has what a poll carries between the stages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.config import Config, SourceConfig
from aggregator.content.fulltext import Page
from aggregator.errors import FetchError, LocalFaultError, StoreError
from aggregator.models import Changes, Counts, SourceOutcome, Status
from aggregator.poll.batch import PARSE_BATCH, Fetched, GroupRecorder, Parsed, Polled, parse_batch
from aggregator.poll.fetch import Fetcher
from aggregator.poll.ingest import Applied, Ingest
from aggregator.poll.leases import PassLeases
from aggregator.poll.outcome import Answer, Attempt, Validators, poll_record, rebuild_outcome
from aggregator.poll.pages import PagesDone, update_pages
from aggregator.poll.policy import Policy, feed_hints
from aggregator.poll.resolve import ResolvedSource, render_options, resolve_source
from aggregator.poll.worker import (
    InlineExecutor,
    LazyProcessPool,
    Prepared,
    make_executor,
    prepare_many,
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

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

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
        # Each source's settings, resolved once, when first polled (a new configuration
        # makes a new Poller): a start does not resolve 100,000 sources before a poll.
        self.sources: dict[str, ResolvedSource] = {}  # by key, as far as resolved
        self._options = render_options(config)
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
        self._recorder = GroupRecorder(self._write)

    def close(self) -> None:
        """Release the HTTP connections."""
        self.fetcher.close()

    def resolved(self, source: SourceConfig) -> ResolvedSource:
        """A source's settings under this configuration.

        A source that is not the configuration's own (edited since) is resolved afresh.
        """
        resolved = self.sources.get(source.key)
        if resolved is not None and (resolved.config is source or resolved.config == source):
            return resolved
        resolved = resolve_source(self.config, source, self._options)
        if source is self.config.source(source.key):  # not one edited since
            self.sources[source.key] = resolved
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

        A pipeline, so that many small feeds cost little more than parsing them: threads
        fetch; the fetched documents go to the process pool several to a job; this thread
        stores the parsed ones and records the polls, many to a transaction (``_write``).

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
        by_name = {s.key: s for s in sources}
        with (
            make_executor(self.workers, len(sources)) as pool,
            ThreadPoolExecutor(concurrency, thread_name_prefix="poll") as threads,
        ):
            workers = self.workers if isinstance(pool, LazyProcessPool) else 1
            fetching: set[Future[Fetched | PollRecord | SourceOutcome]] = set()
            parsing: dict[Future[list[Prepared]], list[Fetched]] = {}
            documents: list[Fetched] = []  # fetched, waiting for the pool
            pending: list[Polled] = []  # ended, waiting for the writer
            page_passes: list[Future[PagesDone]] = []
            queue = iter(sources)

            def done(outcome: SourceOutcome) -> None:
                outcomes[outcome.source] = outcome
                if on_done is not None:
                    on_done(outcome)

            def flush(pages: bool = True) -> None:
                if leases is None:
                    tokens: list[str | None] = [None] * len(pending)
                else:
                    tokens = [leases.token(_source_key(item)) for item in pending]
                records = self._write(pending, tokens) if pending else []
                pending.clear()
                for record in records:
                    done(record.outcome)
                    # Full text: the source's pages, now that its entries are stored,
                    # beside the other sources' polls (the same bounded threads).
                    source = by_name[record.outcome.source]
                    if pages and self.resolved(source).full_text:
                        page_passes.append(threads.submit(self.update_pages, source, pool))

            def fetched(result: Fetched | PollRecord | SourceOutcome) -> None:
                if isinstance(result, Fetched):
                    documents.append(result)
                elif isinstance(result, PollRecord):
                    pending.append(result)
                else:
                    done(result)

            def hand_out() -> None:
                # Full jobs; or what is waiting, when a worker would idle without it.
                while documents and len(parsing) < 2 * workers:
                    if len(documents) < PARSE_BATCH and len(parsing) >= workers and fetching:
                        return
                    batch = parse_batch(documents)
                    # Taken off the list once handed out: a signal meanwhile leaves them
                    # there, parsed here before they are recorded.
                    parsing[self._submit_parse(batch, pool)] = batch
                    del documents[: len(batch)]

            try:
                while True:
                    # Submitted inside the ``try``: a signal between two submits must
                    # still record the polls already started.
                    while len(fetching) < concurrency and len(documents) < 2 * PARSE_BATCH:
                        source = next(queue, None)
                        if source is None:
                            break
                        state = states.get(source.key)
                        if leases is None:
                            job = threads.submit(self._fetch_guarded, source, state, manual)
                        else:
                            job = threads.submit(self._fetch_leased, source, state, manual, leases)
                        fetching.add(job)
                    hand_out()
                    # Recorded in batches: one transaction for many polls (a warm poll of
                    # hundreds of 304s is otherwise all transaction overhead).
                    if len(pending) >= RECORD_BATCH or not (fetching or parsing or documents):
                        flush()
                    if not (fetching or parsing or documents):
                        break
                    waiting: list[Future[Any]] = [*fetching, *parsing]
                    ended, _ = wait(waiting, return_when=FIRST_COMPLETED)
                    for future in ended:
                        if future in parsing:
                            pending += self._parsed(parsing.pop(future), future, pool)
                        else:
                            fetching.discard(future)
                            fetched(future.result())
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
                for future in fetching:
                    if not future.cancelled() and future.exception() is None:
                        fetched(future.result())
                for future, batch in parsing.items():
                    pending.extend(self._parsed(batch, future, pool))
                if documents:
                    pending.extend(self._parse_guarded(documents, None))
                flush(pages=False)
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
        states: Mapping[str, SourceState] | None = None,
    ) -> SourceOutcome:
        """Poll one source: conditional fetch, parse only what changed, store, record.

        Args:
            source: the source.
            pool: where to parse and clean (a process pool); inline when None.
            manual: poll even a paused or gone source (a refresh asked for by a user).
            lease: the claim's token (``store/claims.py``): the record clears the lease,
                and writes the source's state only while the lease is still this one's.
            states: the states of a batch of sources read in one query (a claim's); the
                source's is read here when None (absent from them: never polled).
        """
        state = states.get(source.key) if states is not None else self.store.load_state(source.key)
        result = self._poll_guarded(source, state, pool, manual)
        if isinstance(result, SourceOutcome):
            return result
        return self._recorder.record(result, lease).outcome

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

    def _fetch_leased(
        self,
        source: SourceConfig,
        state: SourceState | None,
        manual: bool,
        leases: PassLeases,
    ) -> Fetched | PollRecord | SourceOutcome:
        """``_fetch_guarded`` under the source's lease (skipped when another holds it)."""
        try:
            held = leases.take(source.key) is None
        except StoreError as exc:
            return SourceOutcome(source=source.key, url=source.url, error=f"cannot claim it: {exc}")
        if held:
            status = state.status if state is not None else Status.NEW
            return SourceOutcome(
                source=source.key, url=source.url, status=status, skipped=True, held=True
            )
        return self._fetch_guarded(source, state, manual)

    def _poll_guarded(
        self,
        source: SourceConfig,
        state: SourceState | None,
        pool: Executor | None,
        manual: bool,
    ) -> Polled | SourceOutcome:
        """Poll without storing or recording: what the writer stores and records
        (``_write``), or the outcome of a skip.

        Whatever goes wrong becomes a recorded failure of this source (and its backoff),
        never an exception that would lose the other sources' results.
        """
        fetched = self._fetch_guarded(source, state, manual)
        if not isinstance(fetched, Fetched):
            return fetched
        [parsed] = self._parse_guarded([fetched], pool)
        return parsed

    def _fetch_guarded(
        self, source: SourceConfig, state: SourceState | None, manual: bool
    ) -> Fetched | PollRecord | SourceOutcome:
        """Fetch a source: its document to parse, or the record of a poll that ends here
        (unchanged, failed), or the outcome of a skip; never raises."""
        started = self.clock()
        clock_start = time.perf_counter()
        try:
            fetched = self._fetch(source, state, manual, started, clock_start)
        except Exception as exc:  # a bug: recorded like any failure
            log.exception("poll source=%s failed unexpectedly", source.key)
            fetched = Attempt(started, error=f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(fetched, Attempt):
            return self._make_record(source, state, fetched, clock_start)
        return fetched

    def _parse_guarded(self, documents: Sequence[Fetched], pool: Executor | None) -> list[Polled]:
        """Parse and convert fetched documents in the pool: each parsed, or the record of
        its failure."""
        pool = pool or InlineExecutor()
        return self._parsed(documents, self._submit_parse(documents, pool), pool)

    def _submit_parse(self, documents: Sequence[Fetched], pool: Executor) -> Future[list[Prepared]]:
        """Hand documents to the pool, several to one job (one pickling round trip)."""
        try:
            return pool.submit(
                prepare_many,
                [
                    (
                        d.resolved.view,
                        d.url,
                        d.body,
                        d.headers,
                        d.attempt.started,
                        (d.resolved.options, d.resolved.render_key),
                    )
                    for d in documents
                ],
            )
        except Exception as exc:  # e.g. a broken pool: the job's failure, as its result
            failed: Future[list[Prepared]] = Future()
            failed.set_exception(exc)
            return failed

    def _parsed(
        self, documents: Sequence[Fetched], job: Future[list[Prepared]], pool: Executor
    ) -> list[Polled]:
        """A parse job's documents, parsed, or the records of their failure."""
        try:
            return [
                Parsed(replace(d, body=b""), prepared)
                for d, prepared in zip(documents, job.result(), strict=True)
            ]
        except Exception as exc:  # a bug or a dead worker: recorded like any failure
            log.exception("parsing %d documents failed unexpectedly", len(documents))
            if isinstance(exc, BrokenProcessPool) and isinstance(pool, LazyProcessPool):
                pool.reset()  # a worker died (e.g. out of memory): start afresh next time
            error = f"internal error: {type(exc).__name__}: {exc}"
            return [self._failed(d, error) for d in documents]

    def _make_record(
        self,
        source: SourceConfig,
        state: SourceState | None,
        attempt: Attempt,
        clock_start: float,
    ) -> PollRecord:
        duration = time.perf_counter() - clock_start
        return poll_record(self.policy, source, state, attempt, rng=self.rng, duration=duration)

    def _failed(self, fetched: Fetched, error: str) -> PollRecord:
        """The record of a fetched document that could not be parsed."""
        attempt = replace(fetched.attempt, error=error)
        return self._make_record(fetched.source, fetched.state, attempt, fetched.clock_start)

    def _fetch(
        self,
        source: SourceConfig,
        state: SourceState | None,
        manual: bool,
        started: datetime,
        clock_start: float,
    ) -> Attempt | Fetched | SourceOutcome:
        """Fetch: a document to parse, what the poll did (unchanged, failed), or a skip."""
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
        attempt = Attempt(
            started,
            answer=answer,
            validators=Validators(
                fetched.headers.get("etag"),
                fetched.headers.get("last-modified"),
                body_hash,
                resolved.render_key,
            ),
        )
        return Fetched(
            source,
            state,
            resolved,
            without_credentials(fetched.url),  # the final URL: the base of relative links
            fetched.body,
            fetched.headers,
            attempt,
            clock_start,
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

    def _write(self, items: Sequence[Polled], leases: Sequence[str | None]) -> list[PollRecord]:
        """Store the parsed polls' articles and record every poll, in one transaction,
        and log one line per poll.

        One transaction for many polls: a pass of many small feeds is otherwise mostly
        commits. A batch that fails (a hostile document, a bug, a database error) is
        written again one poll at a time, so one source's failure never costs the others
        their articles or records; a poll that fails alone is recorded with its error.
        With a lease (claimed polls), the claim ends here; a claim that lost its lease
        records its history, not its state (a newer claim's poll owns that now).
        """
        try:
            with self.store.transaction() as conn:
                records = self._stored(conn, items)
                records = self._record_in(conn, records, leases)
        except Exception as exc:
            if len(items) > 1:
                log.warning("%d polls stored one by one after a failure: %s", len(items), exc)
                return [
                    r
                    for i, lease in zip(items, leases, strict=True)
                    for r in self._write([i], [lease])
                ]
            records = [self._unstored(items[0], exc)]
            try:
                with self.store.transaction() as conn:
                    records = self._record_in(conn, records, leases)
            except StoreError as again:
                log.error("cannot record %d polls: %s", len(records), again)
        if log.isEnabledFor(logging.INFO):
            for record in records:
                log.info("poll %s", logfmt(record.outcome))
        return records

    def _stored(self, conn: Connection, items: Sequence[Polled]) -> list[PollRecord]:
        """Parsed polls' articles written in ``conn``: their records.

        Every poll's files first (each decided in turn, seeing the names chosen before it),
        then all their rows in one statement, then each source's retention: a small
        feed's poll is a few rows, and a statement each cost more than writing them. A
        source polled twice in the batch (single polls of one group commit) is written
        poll by poll: its second poll must read what its first one stored.
        """
        parsed = [i for i in items if isinstance(i, Parsed) and i.prepared.error is None]
        names = [i.fetched.resolved.name for i in parsed]
        if len(set(names)) < len(names):
            return [r for item in items for r in self._stored(conn, [item])]
        stored = self.store.stored_entries_of(
            conn,
            {i.fetched.resolved.name: self.ingest.entry_keys(i.prepared.articles) for i in parsed},
        )
        chosen: set[str] = set()  # folds of the names given to rows not written yet
        applied = {
            id(i): self.ingest.write_files(
                conn,
                i.fetched.resolved,
                i.prepared.articles,
                i.fetched.attempt.started,
                stored=stored[i.fetched.resolved.name],
                chosen=chosen,
            )
            for i in parsed
        }
        self.ingest.write_rows(conn, *applied.values())
        return [self._stored_record(conn, item, applied.get(id(item))) for item in items]

    def _stored_record(self, conn: Connection, item: Polled, applied: Applied | None) -> PollRecord:
        """A poll's record, once its articles are written (``applied``), after its
        source's retention."""
        if isinstance(item, PollRecord):
            return item
        fetched, prepared = item.fetched, item.prepared
        source, now = fetched.resolved, fetched.attempt.started
        counts = prepared_counts(prepared)
        if applied is not None:
            deleted: list[str] = []
            pruned = self.store.prune(
                conn, source.name, source.keep_days, source.keep_max, now, deleted
            )
            counts += applied.counts + Counts(
                dropped=pruned, changes=Changes(deleted=tuple(deleted))
            )
        attempt = replace(
            fetched.attempt,
            counts=counts,
            error=prepared.error,
            hints=prepared.hints,
            feed_title=prepared.feed_title,
        )
        return self._make_record(fetched.source, fetched.state, attempt, fetched.clock_start)

    def _unstored(self, item: Polled, exc: Exception) -> PollRecord:
        """The record of a poll whose articles could not be stored (rolled back): the
        index's error, our storage's fault, or a bug's."""
        if isinstance(item, PollRecord):
            return item
        fetched, prepared = item.fetched, item.prepared
        error = fault = None
        if isinstance(exc, LocalFaultError):
            fault = str(exc)
        elif isinstance(exc, StoreError):
            error = str(exc)
        else:
            log.error("poll source=%s failed unexpectedly", fetched.source.key, exc_info=exc)
            error = f"internal error: {type(exc).__name__}: {exc}"
        attempt = replace(
            fetched.attempt,
            counts=prepared_counts(prepared),
            error=error,
            fault=fault,
            hints=prepared.hints,
            feed_title=prepared.feed_title,
        )
        return self._make_record(fetched.source, fetched.state, attempt, fetched.clock_start)

    def _record_in(
        self, conn: Connection, records: list[PollRecord], leases: Sequence[str | None]
    ) -> list[PollRecord]:
        """Write polls and states in ``conn``; a claim that lost its lease records history."""
        kept: list[PollRecord] = []
        for record, lease in zip(records, leases, strict=True):
            state = record.state
            if lease is not None and not claims.release(conn, state.name, lease):
                log.warning("source=%s lease lost; state left to the newer claim", state.name)
                record = replace(record, state=SourceStateUpdate(state.name, state.url))
            kept.append(record)
        self.store.record_polls(conn, kept, self.config.settings.schedule.history)
        return kept

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


def _source_key(polled: Polled) -> str:
    """The key of the source a poll ready for the writer belongs to."""
    if isinstance(polled, Parsed):
        return polled.fetched.source.key
    return polled.outcome.source


def _stored_page(stored: StoredPage | None) -> Page | str | None:
    """A stored page as ``prepare_stored`` takes it: the page, why there is none, or None
    (no page fetched yet: the feed's body)."""
    if stored is None:
        return None
    return stored.page or stored.error or "fetch failed"


def prepared_counts(prepared: Prepared) -> Counts:
    """What parsing and converting a document already tells of its entries."""
    return Counts(failed=prepared.failed, warnings=prepared.warnings)


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
