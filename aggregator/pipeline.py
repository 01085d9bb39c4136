"""Poll sources: fetch → parse → convert → store, recording every outcome.

The CPU-heavy part (parse and clean) is a pure function, ``prepare``, run in a process
pool when there is more than one source and more than one core. The main process keeps
the I/O: fetching (threads), deciding what changed, writing files and the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from aggregator import __version__
from aggregator.clean import Rules
from aggregator.config import Config, SourceConfig
from aggregator.convert import (
    RenderOptions,
    SourceView,
    article_dir,
    article_name,
    assign_keys,
    convert_entry,
    entry_uid,
    render_article,
)
from aggregator.errors import AggregatorError, StoreError
from aggregator.fetch import Fetcher
from aggregator.models import Article, ParsedEntry, SourceOutcome
from aggregator.parse import parse_feed
from aggregator.store import EntryRow, Store, StoredEntry, text_hash

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
P = ParamSpec("P")
T = TypeVar("T")


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The result of parsing and converting one source's document (picklable)."""

    source: str
    articles: tuple[Article, ...] = ()
    indices: tuple[int, ...] = ()  # each article's position among the entries given
    feed_title: str | None = None
    warnings: tuple[str, ...] = ()
    failed: int = 0  # entries that could not be read or converted
    error: str | None = None  # the whole document was unusable


def prepare(
    view: SourceView, url: str, body: bytes, headers: dict[str, str] | None = None
) -> Prepared:
    """Parse a feed document and convert its entries; never raises for bad input."""
    try:
        feed = parse_feed(url, body, headers)
    except AggregatorError as exc:
        return Prepared(source=view.name, error=str(exc))
    return _convert_all(
        view, feed.entries, feed.title, [*feed.skipped], [feed.warning] if feed.warning else []
    )


def prepare_stored(view: SourceView, raws: list[str]) -> Prepared:
    """Convert stored raw entries again (for ``rebuild``)."""
    return _convert_all(view, [ParsedEntry.from_json(r) for r in raws], None, [], [])


def _convert_all(
    view: SourceView,
    entries: Iterable[ParsedEntry],
    title: str | None,
    problems: list[str],
    warnings: list[str],
) -> Prepared:
    articles: list[Article] = []
    indices: list[int] = []
    failed = len(problems)
    for index, entry in enumerate(entries):
        try:
            articles.append(convert_entry(entry, view))
            indices.append(index)
        except Exception as exc:  # one hostile entry must not stop its feed
            failed += 1
            problems.append(
                f"entry {index + 1} ({entry.title[:60]!r}): {type(exc).__name__}: {exc}"
            )
    return Prepared(
        source=view.name,
        articles=tuple(articles),
        indices=tuple(indices),
        feed_title=title,
        warnings=tuple(warnings + problems),
        failed=failed,
    )


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
    """

    def __init__(
        self, config: Config, store: Store, *, clock: Clock = utcnow, workers: int | None = None
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
            settings.fetch.timeout, settings.fetch.max_bytes, settings.fetch.user_agent
        )

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
            name=source.key, categories=source.categories, author=source.site, rules=rules
        )

    def render_key(self, view: SourceView) -> str:
        """A fingerprint of everything, besides the entry, that shapes its article file."""
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
    ) -> list[SourceOutcome]:
        """Poll each source once; a failing source is recorded and the others go on."""
        sources = list(sources)
        outcomes: list[SourceOutcome] = []
        with self._executor(len(sources)) as pool, ThreadPoolExecutor(8) as fetch_pool:
            started: dict[str, tuple[datetime, float]] = {}

            def submit(source: SourceConfig) -> Future[Prepared]:
                started[source.key] = (self.clock(), time.perf_counter())
                view = self.view(source)
                try:
                    fetched = self.fetcher.fetch(source.url)
                except AggregatorError as exc:
                    done: Future[Prepared] = Future()
                    done.set_result(Prepared(source=source.key, error=str(exc)))
                    return done
                return pool.submit(prepare, view, fetched.url, fetched.body, fetched.headers)

            futures = list(fetch_pool.map(submit, sources))
            for source, future in zip(sources, futures, strict=True):
                prepared = future.result()
                when, t0 = started[source.key]
                outcome = self._store(source, prepared, when, t0)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        return outcomes

    def _executor(self, jobs: int) -> Executor:
        if self.workers > 1 and jobs > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["aggregator.pipeline"])
            return ProcessPoolExecutor(min(self.workers, jobs), mp_context=context)
        return _InlineExecutor()

    def _store(
        self, source: SourceConfig, prepared: Prepared, when: datetime, t0: float
    ) -> SourceOutcome:
        tally = _Tally(failed=prepared.failed, problems=list(prepared.warnings))
        error = prepared.error
        if error is None:
            try:
                with self.store.transaction() as conn:
                    self._apply(conn, source, prepared.articles, when, tally)
                    keep_days, keep_max = self._retention(source)
                    tally.dropped += self.store.prune(conn, source.key, keep_days, keep_max, when)
            except StoreError as exc:
                error = str(exc)
        outcome = tally.outcome(source.key, error)
        duration = time.perf_counter() - t0
        try:
            with self.store.transaction() as conn:
                self.store.record_poll(
                    conn, outcome, source.url, when, duration, prepared.feed_title
                )
        except StoreError as exc:
            log.error("source=%s cannot record poll: %s", source.key, exc)
        log.info(
            "source=%s new=%d updated=%d unchanged=%d failed=%d dropped=%d error=%s",
            source.key,
            outcome.new,
            outcome.updated,
            outcome.unchanged,
            outcome.failed,
            outcome.dropped,
            outcome.error or "-",
        )
        return outcome

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
        render_key = self.render_key(view)
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
        new_paths = self._new_paths(conn, view, batch, states)
        pending: list[tuple[str, EntryRow]] = []
        writes: dict[str, str] = {}
        seen_again: list[str] = []
        for key, article in batch.items():
            state = states.get(key)
            if state is not None and state.pruned:
                tally.dropped += 1
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
                and self.store.file_exists(state.path)
            ):
                tally.unchanged += 1
                seen_again.append(key)
                continue
            uid = state.uid if state else entry_uid(name, key)
            path = state.path if state and state.path else new_paths[key]
            text = render_article(article, uid, date, self.options)
            digest = text_hash(text)
            same_file = state is not None and state.file_hash == digest
            if not (same_file and self.store.file_exists(path)):
                writes[path] = text
            if state is None:
                kind = "new"
            elif state.raw_hash != article.raw_hash or not same_file:
                kind = "updated"
            else:
                kind = "unchanged"
            pending.append(
                (
                    kind,
                    EntryRow(
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
                    ),
                )
            )
        # Files first (concurrently: creating a file is mostly kernel time), then the rows
        # of the entries whose file is safely on disk.
        failures = self.store.write_files(writes)
        rows: list[EntryRow] = []
        for kind, row in pending:
            if row.path in failures:
                tally.failed += 1
                tally.problems.append(f"write: {failures[row.path]}")
                continue
            setattr(tally, kind, getattr(tally, kind) + 1)
            rows.append(row)
        self.store.upsert_entries(conn, rows)
        self.store.touch_entries(conn, name, seen_again, now)

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
            if key not in states or not states[key].path
        }
        taken = self.store.paths_taken(conn, wanted.values())
        chosen: dict[str, str] = {}
        claimed: set[str] = set()
        for key, path in wanted.items():
            uid = entry_uid(view.name, key)
            on_disk = self.store.file_exists(path) and not self.store.file_belongs_to(path, uid)
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
        with self._executor(len(sources)) as pool:
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


class _InlineExecutor(Executor):
    """Runs submitted work at once, in this thread (one source, or one core)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def iter_enabled(config: Config, only: str | None = None) -> Iterator[SourceConfig]:
    """The enabled sources, or just the named one (enabled or not)."""
    for source in config.sources:
        if only is not None:
            if source.key == only:
                yield source
        elif source.enabled:
            yield source
