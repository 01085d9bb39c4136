"""bench/ingest: the full ingest against a bare feedparser.parse, on the same bytes.

Workload: 200 local feeds × 30 seed-like items (bench/workload.py, fixed seed).
Measures, in one run:
  * baseline: ``feedparser.parse(bytes)`` with its default settings, one document after
    another (what a naive aggregator spends before it has cleaned or written anything);
  * ingest: ``Poller.poll_sources`` on a fresh store — decode, parse, clean, sanitise, render,
    write every article file atomically and index it in SQLite.
Prints entries/s for both and ingest-time / parse-time (aim: ≤ 1.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import FEEDS, ITEMS, config_text, write_feeds

from aggregator.config import load_config
from aggregator.poll.pipeline import Poller
from aggregator.store import Store


def bare_parse(bodies: list[bytes]) -> float:
    start = time.perf_counter()
    count = 0
    for body in bodies:
        count += len(feedparser.parse(body).entries)
    elapsed = time.perf_counter() - start
    assert count == FEEDS * ITEMS, count
    return elapsed


def ingest(paths: list[Path], root: Path, workers: int) -> float:
    workdir = Path(tempfile.mkdtemp(dir=root))
    config_path = workdir / "config.yaml"
    config_path.write_text(config_text(paths, workdir), encoding="utf-8")
    config = load_config(config_path)
    store = Store(config.settings.database, config.settings.posts_dir)
    poller = Poller(config, store, workers=workers)
    start = time.perf_counter()
    outcomes = poller.poll_sources(config.sources)
    elapsed = time.perf_counter() - start
    poller.close()
    new = sum(o.new for o in outcomes)
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    assert new == FEEDS * ITEMS, new
    assert store.count_entries() == new
    store.close()
    files = sum(1 for _ in (workdir / "posts").rglob("*.md"))
    assert files == new, files
    # Not deleted until the end: on a disk mounted with `discard`, deleting thousands of
    # files slows the file creation of the next round, which would skew it.
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        paths = write_feeds(root / "feeds")
        bodies = [p.read_bytes() for p in paths]
        entries = FEEDS * ITEMS
        mean_kb = statistics.mean(len(b) for b in bodies) / ITEMS / 1024
        print(
            f"workload: {FEEDS} feeds x {ITEMS} items = {entries} entries, "
            f"~{mean_kb:.1f} KB per item; cpus={os.cpu_count()} workers={args.workers}"
        )
        parse_times, ingest_times = [], []
        for round_ in range(1, args.rounds + 1):
            parse_times.append(bare_parse(bodies))
            ingest_times.append(ingest(paths, root, args.workers))
            print(
                f"round {round_}: feedparser.parse {parse_times[-1]:.2f} s, "
                f"ingest {ingest_times[-1]:.2f} s"
            )
        best_parse, best_ingest = min(parse_times), min(ingest_times)
        print(
            f"baseline feedparser.parse (defaults): {entries / best_parse:8.0f} entries/s "
            f"({best_parse * 1000 / entries:.2f} ms/entry)"
        )
        print(
            f"full ingest (parse+clean+write+index): {entries / best_ingest:7.0f} entries/s "
            f"({best_ingest * 1000 / entries:.2f} ms/entry)"
        )
        print(f"ratio ingest/parse time: {best_ingest / best_parse:.2f} (aim <= 1.0)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
