"""bench/smallfeeds: per-source overhead — many small local feeds, cold and warm.

Workload: 3,000 local RSS files × 3 short items (fixed, generated), one source each.
Measures, in one run and on the same bytes:
  * floor: ``feedparser.parse(bytes)`` of every document, one after another, one process;
  * cold: ``Poller.poll_sources`` on a fresh store (parse, clean, write every article file
    atomically, index it);
  * warm: the same pass again, nothing changed (every file read, hashed, found unchanged,
    every poll recorded);
  * warm single polls: the same again as ``run``'s jobs poll, ``Poller.poll_source`` per
    source from 8 threads, with the states a claim of 100 sources reads in one query.
Prints each as seconds, µs per source and the ratio to the floor (aim: cold ≤ 2, warm a
few hundred µs per source), and where the cold pass's CPU went: the writer's thread
(``Poller._write``: files, rows, records; user and system time), this whole process (fetch
threads, loop, writer) and the pool's processes (parse, clean, render). ``--profile cold|warm`` prints a cProfile of that pass instead.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import resource
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import feedparser
from workload import config_text, write_feeds

from aggregator.config import load_config
from aggregator.poll.pipeline import Poller
from aggregator.poll.worker import LazyProcessPool
from aggregator.store import Store

FEEDS = 3000
ITEMS = 3
CLAIM = 100  # sources a claim of the service's loop takes at most


def feed_document(index: int) -> bytes:
    """A small RSS document (deterministic): a few short items, like a quiet blog."""
    items = "".join(
        f"<item><title>Post {n} of feed {index}</title>"
        f"<link>https://blog{index % 97}.example/{index}/post-{n}</link>"
        f"<guid>https://blog{index % 97}.example/{index}/post-{n}</guid>"
        f"<pubDate>Mon, {1 + n:02d} Mar 2021 {index % 24:02d}:00:00 GMT</pubDate>"
        f"<description><![CDATA[<p>Paragraph one of post {n}, feed {index}, with "
        f'<a href="/a/{n}">a link</a> and <em>some</em> words.</p><p>Two.</p>]]>'
        "</description></item>"
        for n in range(ITEMS)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>Feed {index}</title><link>https://blog{index % 97}.example/</link>"
        f"<description>small</description>{items}</channel></rss>"
    ).encode()


def small_source(index: int) -> list[str]:
    """A small feed's source lines after its URL: a name, one of 20 folders."""
    return [f"    name: feed-{index:04d}", f"    categories: [small, group{index % 20}]"]


def bare_parse(bodies: list[bytes]) -> float:
    start = time.perf_counter()
    count = sum(len(feedparser.parse(body).entries) for body in bodies)
    elapsed = time.perf_counter() - start
    assert count == len(bodies) * ITEMS, count
    return elapsed


poll_profiles: list[cProfile.Profile] = []
# CPU seconds (user, system) of the writer (``Poller._write``), per pass.
writer_cpu: list[list[float]] = []
# CPU seconds of the cold pass, this process's (fetch threads, loop, writer) and its pool
# processes' (parse, clean, render), per round.
cold_cpu: list[tuple[float, float]] = []


pool_cpu: list[float] = [0.0]  # CPU seconds of the pool processes that have ended


def _cpu() -> tuple[float, float]:
    """CPU seconds so far (user + system) of this process, and of the pool processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime, pool_cpu[0]


def _process_cpu(pid: int) -> float:
    """A live process's CPU seconds so far, from /proc (the pool's processes are the
    forkserver's children, not ours: RUSAGE_CHILDREN never sees them)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _counted_pools() -> None:
    """Add each pool's processes' CPU to ``pool_cpu`` as the pool shuts down."""
    inner = LazyProcessPool.shutdown

    def shutdown(self: LazyProcessPool, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pool = self._pool
        if pool is not None:
            for pid in list(getattr(pool, "_processes", None) or {}):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    pool_cpu[0] += _process_cpu(pid)
        inner(self, wait, cancel_futures=cancel_futures)

    LazyProcessPool.shutdown = shutdown  # type: ignore[method-assign]


def _timed_writer() -> None:
    """Count the CPU time (this thread's, kernel time included) the writer spends in
    ``Poller._write``: storing every parsed poll (files, rows) and recording them all."""
    inner = Poller._write

    def write(self: Poller, *args: object) -> object:
        start = resource.getrusage(resource.RUSAGE_THREAD)
        try:
            return inner(self, *args)  # type: ignore[arg-type]
        finally:
            end = resource.getrusage(resource.RUSAGE_THREAD)
            writer_cpu[-1][0] += end.ru_utime - start.ru_utime
            writer_cpu[-1][1] += end.ru_stime - start.ru_stime

    Poller._write = write  # type: ignore[method-assign,assignment]


def _profiled_polls() -> None:
    """Profile each poll thread's work too (cProfile sees only its own thread): the
    fetches (poll_sources parses in the pool, and stores on the main thread)."""
    inner = Poller._fetch_guarded

    def fetch_guarded(self: Poller, *args: object) -> object:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return inner(self, *args)  # type: ignore[arg-type]
        finally:
            profiler.disable()
            poll_profiles.append(profiler)

    Poller._fetch_guarded = fetch_guarded  # type: ignore[method-assign,assignment]


def _print_profile(main: cProfile.Profile, threads: list[cProfile.Profile]) -> None:
    print("== main thread")
    pstats.Stats(main).sort_stats("tottime").print_stats(25)
    if threads:
        print("== poll threads (summed)")
        stats = pstats.Stats(threads[0])
        for profile in threads[1:]:
            stats.add(profile)
        stats.sort_stats("cumulative").print_stats(50)
        stats.sort_stats("tottime").print_stats(30)


def passes(
    paths: list[Path], root: Path, workers: int, profile: str | None
) -> tuple[float, float, float]:
    """A cold pass, a warm pass and warm single polls on a fresh store: their times."""
    workdir = Path(tempfile.mkdtemp(dir=root))
    config_path = workdir / "config.yaml"
    config_path.write_text(config_text(paths, workdir, small_source), encoding="utf-8")
    config = load_config(config_path)
    store = Store(config.settings.database, config.settings.posts_dir)
    times = []
    for name in ("cold", "warm"):
        poller = Poller(config, store, workers=workers)
        profiler = cProfile.Profile() if profile == name else None
        poll_profiles.clear()
        writer_cpu.append([0.0, 0.0])
        cpu = _cpu()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        outcomes = poller.poll_sources(config.sources)
        if profiler is not None:
            profiler.disable()

        times.append(time.perf_counter() - start)
        poller.close()
        if name == "cold":  # the pool's processes have ended (and been waited for)
            after = _cpu()
            cold_cpu.append((after[0] - cpu[0], after[1] - cpu[1]))
        if name == "warm":
            writer_cpu.pop()  # the cold pass's is the one reported
        assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
        new = sum(o.new for o in outcomes)
        if name == "cold":
            assert new == len(paths) * ITEMS, new
        else:
            assert new == 0 and all(o.not_modified for o in outcomes), new
        if profiler is not None:
            _print_profile(profiler, poll_profiles)
    # As ``run``'s jobs poll: one source per call, from a pool of 8 job threads, with the
    # states its claim loop reads for a claim of up to 100 sources in one query.
    poller = Poller(config, store, workers=workers)
    writer_cpu.append([0.0, 0.0])  # not reported: only the cold pass's is
    start = time.perf_counter()
    singles = []
    with ThreadPoolExecutor(config.settings.schedule.concurrency) as jobs:
        for first in range(0, len(config.sources), CLAIM):
            claimed = config.sources[first : first + CLAIM]
            states = store.load_states(s.key for s in claimed)
            singles += jobs.map(partial(poller.poll_source, states=states), claimed)
    times.append(time.perf_counter() - start)
    writer_cpu.pop()
    poller.close()
    assert all(o.ok and o.not_modified for o in singles)
    assert store.count_entries() == len(paths) * ITEMS
    store.close()
    return times[0], times[1], times[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="median of N (default 3)")
    parser.add_argument("--feeds", type=int, default=FEEDS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", choices=("cold", "warm"), default=None)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-smallfeeds-"))
    try:
        paths = write_feeds(root / "feeds", args.feeds, feed_document, digits=4)
        bodies = [p.read_bytes() for p in paths]
        n = len(paths)
        print(
            f"workload: {n} feeds x {ITEMS} items, ~{statistics.mean(map(len, bodies)):.0f} "
            f"bytes each; cpus={os.cpu_count()} workers={args.workers}"
        )
        if args.profile:
            _profiled_polls()
            passes(paths, root, args.workers, args.profile)
            return
        _timed_writer()
        _counted_pools()
        floor, cold, warm, single = [], [], [], []
        for round_ in range(1, args.rounds + 1):
            floor.append(bare_parse(bodies))
            c, w, one = passes(paths, root, args.workers, None)
            cold.append(c)
            warm.append(w)
            single.append(one)
            print(
                f"round {round_}: parse {floor[-1]:.2f} s, cold {c:.2f} s, warm {w:.2f} s, "
                f"warm single polls {one:.2f} s; cold writer CPU "
                f"{sum(writer_cpu[-1]) / n * 1e6:.0f} us/source, main process "
                f"{cold_cpu[-1][0] / n * 1e6:.0f}, pool {cold_cpu[-1][1] / n * 1e6:.0f}"
            )
        f, c, w, one = (statistics.median(x) for x in (floor, cold, warm, single))
        print(f"medians of {args.rounds}:")
        print(f"  floor feedparser.parse: {f:6.2f} s  {f / n * 1e6:7.0f} us/source")
        print(
            f"  cold pass:              {c:6.2f} s  {c / n * 1e6:7.0f} us/source  {c / f:.2f}x floor"
        )
        user, system = (statistics.median(w[i] for w in writer_cpu) for i in (0, 1))
        print(
            f"  cold writer CPU:        {user + system:6.2f} s  {(user + system) / n * 1e6:7.0f} "
            f"us/source  (Poller._write's thread: user {user / n * 1e6:.0f}, system "
            f"{system / n * 1e6:.0f})"
        )
        own, pool = (statistics.median(c[i] for c in cold_cpu) for i in (0, 1))
        print(
            f"  cold CPU: main process {own / n * 1e6:.0f} us/source (writer included), "
            f"pool processes {pool / n * 1e6:.0f} us/source, together {(own + pool) / f:.2f}x "
            "floor"
        )
        print(
            f"  warm pass (unchanged):  {w:6.2f} s  {w / n * 1e6:7.0f} us/source  {w / f:.2f}x floor"
        )
        print(
            f"  warm, single polls:     {one:6.2f} s  {one / n * 1e6:7.0f} us/source  "
            f"{one / f:.2f}x floor"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
