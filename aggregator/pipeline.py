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
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from aggregator.config import Config, SourceConfig
from aggregator.errors import FetchError, LocalFaultError, StoreError
from aggregator.fetch import Fetched, Fetcher
from aggregator.ingest import Ingest, Tally
from aggregator.models import SourceOutcome, Status
from aggregator.policy import (
    Hints,
    Policy,
    after_failure,
    after_local_fault,
    after_success,
    feed_hints,
    with_jitter,
)
from aggregator.records import PollRecord, SourceState
from aggregator.redact import redact, without_credentials
from aggregator.store import Store
from aggregator.worker import (
    InlineExecutor,
    LazyProcessPool,
    Prepared,
    make_executor,
    prepare,
    prepare_stored,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECORD_BATCH = 64  # polls written per transaction by Poller.poll
CHECKPOINT_AFTER = 500  # entries written by one poll pass before the WAL is folded in
P = ParamSpec("P")
T = TypeVar("T")


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
        self.ingest = Ingest(config, store)
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

    def close(self) -> None:
        """Release the HTTP connections."""
        self.fetcher.close()

    # -- polling -------------------------------------------------------------------------

    def poll(
        self,
        sources: Iterable[SourceConfig],
        on_done: Callable[[SourceOutcome], None] | None = None,
        *,
        manual: bool = False,
    ) -> list[SourceOutcome]:
        """Poll each source once, ``concurrency`` at a time; failures are recorded, not raised.

        Args:
            sources: the sources to poll.
            on_done: called with each outcome as it completes (progress bars).
            manual: a user asked for these polls: paused and gone sources are polled too.

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

            def flush() -> None:
                if not pending:
                    return
                self._record(pending)
                for record in pending:
                    outcomes[record.outcome.source] = record.outcome
                    if on_done is not None:
                        on_done(record.outcome)
                pending.clear()

            try:
                # Submitted inside the ``try``: a signal between two submits must still
                # record the polls already started.
                for source in sources:
                    futures.append(
                        threads.submit(self._poll, source, states.get(source.key), pool, manual)
                    )
                for done, future in enumerate(as_completed(futures), start=1):
                    result = future.result()
                    if isinstance(result, PollRecord):
                        pending.append(result)
                    else:
                        outcomes[result.source] = result
                        if on_done is not None:
                            on_done(result)
                    # Recorded in batches: one transaction for many polls (a warm poll of
                    # hundreds of 304s is otherwise all transaction overhead).
                    if len(pending) >= RECORD_BATCH or done == len(futures):
                        flush()
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

    def poll_one(
        self, source: SourceConfig, pool: Executor | None = None, *, manual: bool = False
    ) -> SourceOutcome:
        """Poll one source: conditional fetch, parse only what changed, store, record.

        Args:
            source: the source.
            pool: where to parse and clean (a process pool); inline when None.
            manual: poll even a paused or gone source (a refresh asked for by a user).
        """
        result = self._poll(source, self.store.load_state(source.key), pool, manual)
        if isinstance(result, PollRecord):
            self._record([result])
            return result.outcome
        return result

    def _poll(
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
        try:
            return self._poll_source(source, state, pool, manual, started, clock_start)
        except Exception as exc:  # a bug or a dead worker: recorded like any failure
            log.exception("poll source=%s failed unexpectedly", source.key)
            if isinstance(exc, BrokenProcessPool) and isinstance(pool, LazyProcessPool):
                pool.reset()  # a worker died (e.g. out of memory): start afresh next time
            return self._finish(
                source,
                state,
                started,
                clock_start,
                Tally(),
                error=f"internal error: {type(exc).__name__}: {exc}",
            )

    def _poll_source(
        self,
        source: SourceConfig,
        state: SourceState | None,
        pool: Executor | None,
        manual: bool,
        started: datetime,
        clock_start: float,
    ) -> PollRecord | SourceOutcome:
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
        view = self.ingest.view(source)
        render_key = self.ingest.render_key(source)
        validators = state is not None and not changed
        try:
            fetched = self.fetcher.fetch(
                source.url,
                etag=state.etag if state and validators else None,
                last_modified=state.last_modified if state and validators else None,
            )
        except FetchError as exc:
            return self._finish(
                source,
                state,
                started,
                clock_start,
                Tally(),
                error=str(exc),
                http_status=exc.status,
                retry_after=exc.retry_after,
            )
        body_hash = hashlib.sha1(fetched.body + render_key.encode()).hexdigest()
        if fetched.not_modified or (validators and state and state.body_hash == body_hash):
            return self._finish(
                source,
                state,
                started,
                clock_start,
                Tally(),
                fetched=fetched,
                not_modified=True,
                # Not parsed: the feed's own <ttl>/sy: hint is the one stored last time.
                hints=replace(
                    feed_hints(None, None, None, fetched.headers),
                    ttl=state.feed_hint if state is not None else None,
                ),
            )
        job = (pool or InlineExecutor()).submit(
            prepare, view, without_credentials(fetched.url), fetched.body, fetched.headers
        )
        prepared = job.result()
        tally = Tally(failed=prepared.failed, problems=list(prepared.warnings))
        error = prepared.error
        if error is None:
            try:
                with self.store.transaction() as conn:
                    self.ingest.apply(conn, source, prepared.articles, started, tally)
                    keep_days, keep_max = self.ingest.retention(source)
                    tally.dropped += self.store.prune(
                        conn, source.key, keep_days, keep_max, started
                    )
            except LocalFaultError as exc:
                tally.fault = str(exc)
            except StoreError as exc:
                error = str(exc)
        return self._finish(
            source,
            state,
            started,
            clock_start,
            tally,
            error=error,
            fetched=fetched,
            hints=prepared.hints,
            feed_title=prepared.feed_title,
            validators={
                "etag": fetched.headers.get("etag"),
                "last_modified": fetched.headers.get("last-modified"),
                "body_hash": body_hash,
            },
        )

    def _finish(
        self,
        source: SourceConfig,
        state: SourceState | None,
        started: datetime,
        clock_start: float,
        tally: Tally,
        *,
        error: str | None = None,
        fetched: Fetched | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        not_modified: bool = False,
        hints: Hints | None = None,
        feed_title: str | None = None,
        validators: dict[str, str | None] | None = None,
    ) -> PollRecord:
        """Decide the source's next state; the poll and the state to record."""
        # Error texts quote the URL (urllib3's too): stored, shown and logged redacted.
        draft = tally.outcome(source.key, redact(error) if error else None)
        failures_before = state.failures if state else 0
        if draft.local_fault:
            status_before = Status(state.status) if state else Status.NEW
            decision = after_local_fault(
                self.policy, source.interval, status_before, failures_before
            )
        elif draft.ok:
            decision = after_success(self.policy, source.interval, hints or Hints())
        else:
            decision = after_failure(
                self.policy,
                source.interval,
                failures_before,
                http_status=http_status,
                retry_after=retry_after,
                message=draft.error or "",
            )
        next_poll = None
        if decision.delay is not None:
            delay = with_jitter(decision.delay, self.policy.jitter, self.rng)
            next_poll = started + timedelta(seconds=self.policy.clamp(delay))
        outcome = replace(
            draft,
            url=source.url,
            http_status=fetched.status if fetched else http_status,
            bytes=len(fetched.body) if fetched else 0,
            duration=time.perf_counter() - clock_start,
            not_modified=not_modified,
            moved_to=fetched.moved_to if fetched else None,
            status=decision.status.value,
            next_poll_at=next_poll,
        )
        if draft.local_fault:
            # Only when it runs next: its status, failures and validators stay as they
            # were, so the next poll fetches and writes everything again.
            fault_row = {"url": source.url, "last_polled_at": started, "next_poll_at": next_poll}
            return PollRecord(outcome, started, fault_row)
        row: dict[str, Any] = {
            "url": source.url,
            "last_polled_at": started,
            "last_error": outcome.error,
            "status": decision.status.value,
            "failures": decision.failures,
            "next_poll_at": next_poll,
            "interval": decision.delay,
            "reason": decision.reason,
            "config_hash": source.fingerprint(),
            "last_http_status": outcome.http_status,
        }
        if fetched is not None:
            row["moved_to"] = outcome.moved_to
        if outcome.ok:
            row["last_ok_at"] = started
            if validators is not None:
                row.update(validators)
        if feed_title is not None:  # the document was parsed: its own hints are fresh
            row["title"] = feed_title
            if hints is not None:
                row["feed_hint"] = max(hints.ttl or 0.0, hints.update_period or 0.0) or None
        return PollRecord(outcome, started, row)

    def _record(self, records: list[PollRecord]) -> None:
        """Write polls and states in one transaction, and log one line per poll."""
        try:
            with self.store.transaction() as conn:
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
        sources = list(sources)
        outcomes: list[SourceOutcome] = []
        with make_executor(self.workers, len(sources)) as pool:
            jobs: list[tuple[SourceConfig, list[str], Future[Prepared]]] = []
            for source in sources:
                with self.store.transaction() as conn:
                    stored = self.store.entries_for_rebuild(conn, source.key)
                keys = [k for k, _ in stored]
                future = pool.submit(
                    prepare_stored, self.ingest.view(source), [r for _, r in stored]
                )
                jobs.append((source, keys, future))
            for source, keys, future in jobs:
                prepared = future.result()
                tally = Tally(failed=prepared.failed, problems=list(prepared.warnings))
                error = None
                try:
                    with self.store.transaction() as conn:
                        self.ingest.apply(
                            conn,
                            source,
                            prepared.articles,
                            self.clock(),
                            tally,
                            keys=[keys[i] for i in prepared.indices],
                            force=True,
                        )
                except StoreError as exc:
                    error = str(exc)
                outcome = tally.outcome(source.key, error)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        return outcomes

    def prune(self, sources: Iterable[SourceConfig]) -> dict[str, int]:
        """Apply each source's retention now; returns how many entries each lost."""
        pruned: dict[str, int] = {}
        now = self.clock()
        for source in sources:
            keep_days, keep_max = self.ingest.retention(source)
            with self.store.transaction() as conn:
                pruned[source.key] = self.store.prune(conn, source.key, keep_days, keep_max, now)
        return pruned


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
