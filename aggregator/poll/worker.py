"""The CPU-heavy stage, run in worker processes: parse a document and convert its entries.

Everything here is pure and picklable: a worker gets bytes and a ``SourceView`` and
returns a ``Prepared``; it never touches the store.

Workers end with the process that started the pool, however it ends (issue 9): each
watches that process and exits when it is gone, and the forkserver and resource tracker
then see their pipes close and exit too.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import ParamSpec, TypeAlias, TypeVar

from aggregator.content.convert import (
    RenderOptions,
    SourceView,
    convert_entry,
    entry_uid,
    render_article,
    untrusted_dates,
)
from aggregator.content.fulltext import Extraction, Page, extract_page
from aggregator.content.parse import parse_feed
from aggregator.errors import AggregatorError
from aggregator.models import Article, ParsedEntry, Prerendered
from aggregator.poll.policy import Hints, feed_hints
from aggregator.signals import STOP_SIGNALS

P = ParamSpec("P")
T = TypeVar("T")

ORPHAN_EXIT = 70  # a worker's exit status once the process that started its pool is gone


@dataclass(frozen=True, slots=True)
class Prepared:
    """The result of parsing and converting one source's document (picklable)."""

    source: str
    articles: tuple[Article, ...] = ()
    indices: tuple[int, ...] = ()  # each article's position among the entries given
    feed_title: str | None = None
    hints: Hints = field(default_factory=Hints)  # how often the feed and server say it changes
    warnings: tuple[str, ...] = ()
    failed: int = 0  # entries that could not be read or converted
    error: str | None = None  # the whole document was unusable


def prepare(
    view: SourceView,
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    now: datetime,
    render: Render | None = None,
) -> Prepared:
    """Parse a feed document and convert its entries; never raises for bad input.

    ``url`` is where the document was found, after redirects: relative links resolve
    against it. ``now`` is the time of the poll (a date far ahead of it is not trusted).
    With ``render``, each article's file is rendered here too, as a new entry's
    (``Prerendered``): the process that stores it then only writes it.
    """
    try:
        feed = parse_feed(url, body, headers)
    except AggregatorError as exc:
        return Prepared(source=view.name, error=str(exc))
    warnings = [w for w in (feed.encoding_warning, feed.warning) if w]
    entries = feed.entries
    if len(entries) > view.max_entries:
        warnings.append(
            f"{len(entries) - view.max_entries} entries beyond the first {view.max_entries} "
            "ignored (settings.fetch.max_entries)"
        )
        entries = entries[: view.max_entries]
    prepared = _convert_all(view, entries, now, feed.title, [*feed.skipped], warnings)
    hints = feed_hints(feed.ttl, feed.update_period, feed.update_frequency, headers)
    articles = prepared.articles
    if render is not None:
        articles = tuple(_prerender(view.name, a, now, render) for a in articles)
    return replace(prepared, articles=articles, hints=hints)


def _prerender(name: str, article: Article, now: datetime, render: Render) -> Article:
    """An article with its file's text as a new entry gets it (its id and date)."""
    options, render_key = render
    uid = entry_uid(name, article.key)
    date = article.published or article.updated or now
    text = render_article(article, uid, date, options)
    return replace(article, prerendered=Prerendered(uid, date, render_key, text))


#: How to render a source's articles: its options, and its render key.
Render: TypeAlias = tuple[RenderOptions, str]
#: What ``prepare`` takes of one document: the source's view, its URL, body, headers,
#: the time of its poll, and how to render its articles.
Document: TypeAlias = tuple[SourceView, str, bytes, "dict[str, str] | None", datetime, Render]


def prepare_many(documents: Sequence[Document]) -> list[Prepared]:
    """``prepare`` each of several documents: one job of the pool for them all (a small
    feed's parse costs little more than pickling it there and back)."""
    return [
        prepare(view, url, body, head, now=now, render=render)
        for view, url, body, head, now, render in documents
    ]


def prepare_stored(
    view: SourceView,
    raws: list[str],
    now: datetime,
    pages: Sequence[Page | str | None] = (),
    selector: str | None = None,
) -> Prepared:
    """Convert stored raw entries again (for ``rebuild``), as if polled at ``now``.

    A date that was too far ahead when the entry was polled may be trusted now. An entry
    with a stored page (``pages[i]``; a string: why its fetch failed) takes its body from
    it again (full text), without fetching.
    """
    extractions = [
        None
        if p is None
        else extract_page(p, selector)
        if isinstance(p, Page)
        else Extraction("", None, p)
        for p in pages
    ]
    entries = [ParsedEntry.from_json(r) for r in raws]
    return _convert_all(view, entries, now, None, [], [], extractions)


def _convert_all(
    view: SourceView,
    entries: Iterable[ParsedEntry],
    now: datetime,
    title: str | None,
    problems: list[str],
    warnings: list[str],
    pages: Sequence[Extraction | None] = (),
) -> Prepared:
    articles: list[Article] = []
    indices: list[int] = []
    failed = len(problems)
    for index, entry in enumerate(entries):
        try:
            page = pages[index] if index < len(pages) else None
            articles.append(convert_entry(entry, view, now, page))
            indices.append(index)
        except Exception as exc:  # one hostile entry must not stop its feed
            failed += 1
            problems.append(
                f"entry {index + 1} ({entry.title[:60]!r}): {type(exc).__name__}: {exc}"
            )
            continue
        refused = untrusted_dates(entry, now)
        if refused is not None:
            warnings.append(f"entry {index + 1} ({articles[-1].title[:60]!r}): {refused}")
    return Prepared(
        source=view.name,
        articles=tuple(articles),
        indices=tuple(indices),
        feed_title=title,
        warnings=tuple(warnings + problems),
        failed=failed,
    )


class InlineExecutor(Executor):
    """Runs submitted work at once, in this thread (one source, or one core)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def make_executor(workers: int, jobs: int) -> Executor:
    """A process pool for ``jobs`` documents, or inline work when one process is enough."""
    if workers > 1 and jobs > 1:
        return LazyProcessPool(min(workers, jobs))
    return InlineExecutor()


class LazyProcessPool(Executor):
    """A process pool started on first use: a poll where every feed answers 304 (or
    nothing changed) parses nothing and should not pay for starting processes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._pool is None:
                # forkserver, not fork: the poller runs threads, and forking a threaded
                # process can copy a held lock into the child (Python 3.12+ warns).
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["aggregator.poll.worker"])
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=context,
                    initializer=watch_parent,
                    initargs=(os.getpid(),),
                )
            pool = self._pool
        # A submit may start the forkserver or a worker. Blocked here, SIGINT and SIGTERM
        # stay blocked in them (a signal mask survives fork and exec): a Ctrl-C or a stop
        # sent to the whole process group then reaches the main process alone, even while
        # a worker is being born, before ``watch_parent`` has run in it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return pool.submit(fn, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # Leaving on an exception (a signal's Interrupted, Ctrl-C): drop the queued work
        # instead of parsing everything before the process may exit.
        self.shutdown(wait=True, cancel_futures=exc_type is not None)

    def reset(self) -> None:
        """Drop a broken pool (a worker died); the next submit starts a new one."""
        self.shutdown(wait=False, cancel_futures=True)


def watch_parent(parent: int) -> None:
    """Pool initializer: end this worker as soon as process ``parent`` has ended.

    A worker is a child of the forkserver, not of ``parent``, so PR_SET_PDEATHSIG (or
    ``os.getppid``) would watch the wrong process; and it waits for work on a pipe whose
    write end it holds itself, so it would wait for ever. While it lives, the
    descriptors it holds keep the forkserver and the resource tracker alive too.

    It also ignores SIGINT and SIGTERM: a terminal's Ctrl-C and a service manager's stop
    reach every process of the group, and a worker that died of them would break the
    pool under the polls the main process is letting finish. Stopping is its job.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    threading.Thread(target=_exit_after, args=(parent,), name="watch-parent", daemon=True).start()


def _exit_after(parent: int) -> None:
    try:
        handle = os.pidfd_open(parent)  # Linux 5.3+: readable once the process has ended
    except ProcessLookupError:
        os._exit(ORPHAN_EXIT)  # already gone
    except (AttributeError, OSError):  # no pidfd here: look once a second instead
        while _alive(parent):
            time.sleep(1.0)
    else:
        watch = select.poll()
        watch.register(handle, select.POLLIN)
        watch.poll()  # returns once the process has ended
    os._exit(ORPHAN_EXIT)  # nothing to clean up: a worker holds no files and no store


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or its number now someone else's
        return False
    return True
