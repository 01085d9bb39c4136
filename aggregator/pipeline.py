"""Poll sources: fetch → parse → convert → store, recording every outcome.

The CPU-heavy part (parse and clean) is a pure function, ``prepare``, run in a process
pool when there is more than one source and more than one core. The main process keeps
the I/O: fetching (threads), deciding what changed, writing files and the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from aggregator import __version__
from aggregator.clean import Rules
from aggregator.config import Config, SourceConfig
from aggregator.convert import (
    RenderOptions,
    SourceView,
    article_dir,
    article_name,
    assign_keys,
    entry_uid,
    render_article,
)
from aggregator.errors import FetchError, StoreError
from aggregator.fetch import Fetched, Fetcher
from aggregator.filter import Rule, verdict
from aggregator.models import Article, SourceOutcome
from aggregator.policy import (
    Hints,
    Policy,
    Status,
    after_failure,
    after_success,
    feed_hints,
    with_jitter,
)
from aggregator.store import EntryRow, PollRecord, SourceState, Store, StoredEntry, text_hash
from aggregator.worker import (
    InlineExecutor,
    LazyProcessPool,
    Prepared,
    make_executor,
    prepare,
    prepare_stored,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECORD_BATCH = 64  # polls written per transaction by Poller.poll
CHECKPOINT_AFTER = 500  # entries written by one poll pass before the WAL is folded in
P = ParamSpec("P")
T = TypeVar("T")


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class _Tally:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    dropped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    def outcome(self, source: str, error: str | None) -> SourceOutcome:
        """The outcome; a failed article write, or keeping nothing at all, fails the source."""
        writes = [p.removeprefix("write: ") for p in self.problems if p.startswith("write: ")]
        if error is None and writes:
            error = writes[0]
        if error is None and self.failed and not (self.new or self.updated or self.unchanged):
            error = f"no entry could be kept ({self.failed} failed)"
        return SourceOutcome(
            source=source,
            new=self.new,
            updated=self.updated,
            unchanged=self.unchanged,
            failed=self.failed,
            dropped=self.dropped,
            error=error,
            warnings=tuple(self.problems),
        )


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
        self.options = RenderOptions(
            date_style=settings.front_matter.date_style,
            timezone=settings.front_matter.timezone,
            escape_braces=settings.front_matter.escape_braces,
            comments=settings.front_matter.comments,
        )
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

    # -- per-source facts ----------------------------------------------------------------

    def view(self, source: SourceConfig) -> SourceView:
        """What conversion needs to know about a source."""
        rules = Rules(
            (*self.config.settings.remove, *source.remove), self.config.settings.iframe_hosts
        )
        return SourceView(
            name=source.key,
            categories=source.categories,
            author=source.site,
            rules=rules,
            max_entries=self.config.settings.fetch.max_entries,
        )

    def rules(self, source: SourceConfig) -> tuple[Rule, ...]:
        """The ingest rules of a source: the global ones, then its own."""
        return tuple(r.rule() for r in (*self.config.settings.rules, *source.rules))

    def render_key(self, source: SourceConfig) -> str:
        """A fingerprint of everything, besides the entry, that shapes its article file."""
        view = self.view(source)
        facts = [
            __version__,
            self.options.date_style,
            self.options.timezone,
            self.options.escape_braces,
            self.options.comments,
            view.categories,
            view.author,
            view.rules.remove,
            sorted(view.rules.iframe_hosts),
            [r.describe() for r in self.rules(source)],
        ]
        return hashlib.sha1(json.dumps(facts, ensure_ascii=False).encode()).hexdigest()[:16]

    def _retention(self, source: SourceConfig) -> tuple[int | None, int | None]:
        settings = self.config.settings
        return (source.keep_days or settings.keep_days, source.keep_max or settings.keep_max)

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
            futures = [
                threads.submit(self._poll, s, states.get(s.key), pool, manual) for s in sources
            ]
            pending: list[PollRecord] = []
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
                if pending and (len(pending) >= RECORD_BATCH or done == len(futures)):
                    self._record(pending)
                    for record in pending:
                        outcomes[record.outcome.source] = record.outcome
                        if on_done is not None:
                            on_done(record.outcome)
                    pending = []
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
                _Tally(),
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
        view = self.view(source)
        render_key = self.render_key(source)
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
                _Tally(),
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
                _Tally(),
                fetched=fetched,
                not_modified=True,
                # Not parsed: the feed's own <ttl>/sy: hint is the one stored last time.
                hints=replace(
                    feed_hints(None, None, None, fetched.headers),
                    ttl=state.feed_hint if state is not None else None,
                ),
            )
        job = (pool or InlineExecutor()).submit(
            prepare, view, fetched.url, fetched.body, fetched.headers
        )
        prepared = job.result()
        tally = _Tally(failed=prepared.failed, problems=list(prepared.warnings))
        error = prepared.error
        if error is None:
            try:
                with self.store.transaction() as conn:
                    self._apply(conn, source, prepared.articles, started, tally)
                    keep_days, keep_max = self._retention(source)
                    tally.dropped += self.store.prune(
                        conn, source.key, keep_days, keep_max, started
                    )
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
        tally: _Tally,
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
        draft = tally.outcome(source.key, error)
        failures_before = state.failures if state else 0
        if draft.ok:
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

    def _apply(
        self,
        conn: Connection,
        source: SourceConfig,
        articles: Iterable[Article],
        now: datetime,
        tally: _Tally,
        keys: list[str] | None = None,
        force: bool = False,
    ) -> None:
        """Decide what changed and write it: files first, then the index rows.

        ``keys`` (for a rebuild) are the stored keys; otherwise they are assigned here.
        ``force`` renders every entry again even when nothing seems to have changed.
        """
        articles = list(articles)
        name = source.key
        view = self.view(source)
        render_key = self.render_key(source)
        rebuilding = keys is not None
        if keys is None:
            pairs = [(a.key, a.alt_key) for a in articles]
            recorded = self.store.alt_keys(conn, name, [k for pair in pairs for k in pair])
            keys = assign_keys(pairs, recorded)
        batch: dict[str, Article] = {}
        for key, article in zip(keys, articles, strict=True):
            batch.setdefault(key, article)  # an item repeated to the letter counts once
        states = self.store.stored_entries(conn, name, batch)
        keep_days, _ = self._retention(source)
        cutoff = now - timedelta(days=keep_days) if keep_days else None
        rules = self.rules(source)
        reasons = {key: verdict(rules, article) for key, article in batch.items()} if rules else {}
        new_paths = self._new_paths(
            conn, view, {k: a for k, a in batch.items() if reasons.get(k) is None}, states
        )
        pending: list[tuple[str, EntryRow]] = []
        writes: dict[str, str] = {}
        deletes: list[str] = []
        seen_again: list[str] = []
        for key, article in batch.items():
            state = states.get(key)
            if state is not None and state.pruned:
                tally.dropped += 1
                continue
            if rebuilding and (state is None or state.raw_hash != article.raw_hash):
                # A poll stored a newer version (or pruned it) since the rebuild read it:
                # writing the older one back would revert it.
                tally.unchanged += 1
                continue
            date = article.published or article.updated or (state.first_seen if state else now)
            if state is None and cutoff is not None and date < cutoff:
                tally.dropped += 1
                continue
            if (
                not force
                and state is not None
                and state.path
                and state.raw_hash == article.raw_hash
                and state.render_key == render_key
                and self.store.files.file_exists(state.path)
            ):
                tally.unchanged += 1
                seen_again.append(key)
                continue
            uid = state.uid if state else entry_uid(name, key)
            reason = reasons.get(key)
            if reason is not None:
                # Dropped by a rule: no file (an earlier one goes), the row is the audit.
                tally.dropped += 1
                if state is not None and state.path:
                    deletes.append(state.path)
                pending.append(
                    (
                        "dropped",
                        self._row(
                            name,
                            key,
                            uid,
                            None,
                            article,
                            date,
                            state,
                            now,
                            None,
                            render_key,
                            reason,
                        ),
                    )
                )
                continue
            path = state.path if state and state.path else new_paths[key]
            text = render_article(article, uid, date, self.options)
            digest = text_hash(text)
            same_file = state is not None and state.file_hash == digest
            if not (same_file and self.store.files.file_exists(path)):
                writes[path] = text
            if state is None:
                kind = "new"
            elif state.raw_hash != article.raw_hash or path in writes:
                kind = "updated"
            else:
                kind = "unchanged"
            pending.append(
                (
                    kind,
                    self._row(
                        name, key, uid, path, article, date, state, now, digest, render_key, None
                    ),
                )
            )
        # Files first (concurrently: creating a file is mostly kernel time), then the rows
        # of the entries whose file is safely on disk.
        for path in deletes:
            self.store.files.delete_file(path)
        failures = self.store.files.write_files(writes)
        rows: list[EntryRow] = []
        for kind, row in pending:
            if row.path is not None and row.path in failures:
                tally.failed += 1
                tally.problems.append(f"write: {failures[row.path]}")
                continue
            if kind != "dropped":
                setattr(tally, kind, getattr(tally, kind) + 1)
            rows.append(row)
        self.store.upsert_entries(conn, rows)
        self.store.touch_entries(conn, name, seen_again, now)

    def _row(
        self,
        name: str,
        key: str,
        uid: str,
        path: str | None,
        article: Article,
        date: datetime,
        state: StoredEntry | None,
        now: datetime,
        digest: str | None,
        render_key: str,
        dropped_by: str | None,
    ) -> EntryRow:
        return EntryRow(
            source=name,
            key=key,
            alt_key=article.alt_key,
            uid=uid,
            path=path,
            title=article.title,
            link=article.link,
            author=article.author,
            categories=article.categories,
            tags=article.tags,
            headimg=article.headimg,
            summary=article.summary,
            body_html=article.body_html,
            published=article.published,
            updated=article.updated,
            date=date,
            first_seen=state.first_seen if state else now,
            last_seen=now,
            raw_json=article.raw_json,
            raw_hash=article.raw_hash,
            file_hash=digest,
            render_key=render_key,
            dropped_by=dropped_by,
            dropped_at=now if dropped_by is not None else None,
        )

    def _new_paths(
        self,
        conn: Connection,
        view: SourceView,
        batch: dict[str, Article],
        states: dict[str, StoredEntry],
    ) -> dict[str, str]:
        """Choose a file path for every entry that has none yet, unique and stable."""
        folder = "/".join(article_dir(view.categories))
        wanted = {
            key: f"{folder}/{article_name(a.title)}"
            for key, a in batch.items()
            if key not in states or not (states[key].path or states[key].pruned)
        }
        if not wanted:
            return {}
        taken = self.store.paths_taken(conn, wanted.values())
        orphans = self.store.unindexed_files(conn, folder)
        chosen: dict[str, str] = {}
        claimed: set[str] = set()
        for key, path in wanted.items():
            uid = entry_uid(view.name, key)
            if uid in orphans:  # written before a crash, under the title it had then
                chosen[key] = orphans[uid]
                claimed.add(orphans[uid])
                continue
            files = self.store.files
            on_disk = files.file_exists(path) and not files.file_belongs_to(path, uid)
            if path in taken or path in claimed or on_disk:
                path = f"{folder}/{article_name(batch[key].title, uid)}"
            claimed.add(path)
            chosen[key] = path
        return chosen

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
                future = pool.submit(prepare_stored, self.view(source), [r for _, r in stored])
                jobs.append((source, keys, future))
            for source, keys, future in jobs:
                prepared = future.result()
                tally = _Tally(failed=prepared.failed, problems=list(prepared.warnings))
                error = None
                try:
                    with self.store.transaction() as conn:
                        self._apply(
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
            keep_days, keep_max = self._retention(source)
            with self.store.transaction() as conn:
                pruned[source.key] = self.store.prune(conn, source.key, keep_days, keep_max, now)
        return pruned


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
        fields["moved_to"] = outcome.moved_to
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
