"""bench/overview: the overview and /healthz with 100,000 sources, server time and size.

Generates a config.yaml of N sources (default 100,000; 50 sections, 1,000 sites) and an
index with their state rows (a mix: ok, erroring, paused, gone, never polled, disabled)
and one entry each, straight into SQLite. Then, in process with Flask's test client (the
server's own time, no network), times each URL ``--rounds`` times after one warm-up
request (the first, which builds the web's view of the configuration, is timed and
printed apart; so is the sync of the sources into the index, as the service does at
start), and prints the median and p90 in ms, the page's size, and ratios to two floors
measured in the same run: a bare Flask app returning 1 KB, and the overview of an empty
configuration on an empty index (the page's fixed cost: template, totals, hooks, newest
articles). The index also holds an hour of claims (one per source: the lateness figures
of the overview and /metrics are summarised from them).

The target (issue 13): under 100 KB and under 50 ms of server time per page at 100,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from workload import store_entries  # noqa: E402

from aggregator.config import load_config  # noqa: E402
from aggregator.content.convert import entry_uid  # noqa: E402
from aggregator.store import Store  # noqa: E402
from aggregator.store.records import EntryRow  # noqa: E402
from aggregator.store.schema import claims_table, sources_table  # noqa: E402
from aggregator.web import create_app  # noqa: E402
from aggregator.web.state import SystemClock  # noqa: E402

URLS = (
    "/",
    "/?page=500",
    "/?state=erroring",
    "/?state=problems&sort=-failures",
    "/?state=problems&sort=-failures&page=50",
    "/?state=new",
    "/?state=disabled&sort=-last_poll",
    "/?category=板块7",
    "/?category=板块7/站点7&sort=name",
    "/?category=板块7&sort=state",
    "/?q=host42.",
    "/?q=host42.&sort=-failures",
    "/?q=nothing-matches-this",
    "/?q=host&page=3",
    "/?sort=-last_poll&page=3",
    "/?sort=last_poll&page=3",
    "/?sort=next_poll",
    "/?sort=name&page=500",
    "/?sort=state&page=300",
    "/?sort=failures&page=500",
    "/healthz",
    "/metrics",
)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def write_config(folder: Path, count: int) -> Path:
    lines = ["settings:", "  posts_dir: posts", "  database: db/index.sqlite", "sources:"]
    for i in range(count):
        lines += [
            f"- name: s{i:06d}",
            f"  url: https://host{i % 997}.example/feed/{i}.xml?key=k{i}",
            f"  categories: [板块{i % 50}, 站点{i % 1000}]",
        ]
        if i % 100 == 99:
            lines.append("  enabled: false")
    if not count:
        lines[-1] = "sources: []"
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fill_index(store: Store, count: int) -> None:
    states = ("ok",) * 6 + ("erroring", "paused", "gone", None)
    rows = []
    for i in range(count):
        status = states[i % 10]
        if status is None:
            continue  # never polled: no row
        rows.append(
            {
                "name": f"s{i:06d}",
                "url": f"https://host{i % 997}.example/feed/{i}.xml?key=k{i}",
                "title": f"Feed number {i}",
                "status": status,
                "failures": 0 if status == "ok" else i % 17,
                "last_polled_at": NOW - timedelta(seconds=i),
                "last_ok_at": NOW - timedelta(hours=i % 300),
                "next_poll_at": NOW + timedelta(seconds=i % 3600),
                "last_http_status": 200 if status == "ok" else 500,
                "last_error": None if status == "ok" else f"HTTP 500 from host{i % 997}",
            }
        )
    claims = [
        {"claimed_at": NOW - timedelta(seconds=i % 3600), "late": (i % 1000) / 10}
        for i in range(count)
    ]
    with store.transaction() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(sources_table), rows[start : start + 5000])
        for start in range(0, len(claims), 5000):
            conn.execute(sa.insert(claims_table), claims[start : start + 5000])
    batch: list[EntryRow] = []  # written by store_entries, 5,000 to a transaction
    for i in range(count):
        key = f"https://host{i % 997}.example/{i}/1.html"
        when = NOW - timedelta(minutes=i % 5000)
        batch.append(
            EntryRow(
                source=f"s{i:06d}",
                key=key,
                alt_key=key + "#",
                uid=entry_uid(f"s{i:06d}", key),
                path=None,
                title=f"Entry {i}",
                link=key,
                author="bench",
                categories=(f"板块{i % 50}", f"站点{i % 1000}"),
                tags=(),
                headimg="",
                summary="",
                body_html="<p>body</p>",
                published=when,
                updated=None,
                date=when,
                first_seen=when,
                last_seen=when,
                raw_json="{}",
                raw_hash="x",
                file_hash=None,
                render_key="bench",
            )
        )
    store_entries(store, batch)


class BenchClock(SystemClock):
    """The generated index's time: its claims are of the hour before it."""

    def now(self) -> datetime:
        return NOW


def timed(get: Callable[[], bytes], rounds: int) -> tuple[float, float, int]:
    """(median ms, p90 ms, bytes) of ``rounds`` calls."""
    times = []
    size = 0
    for _ in range(rounds):
        start = time.perf_counter()
        size = len(get())
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-overview-") as tmp:
        root = Path(tmp)
        (root / "big").mkdir()
        (root / "empty").mkdir()
        print(f"generating {args.sources:,} sources ...", flush=True)
        start = time.perf_counter()
        config = load_config(write_config(root / "big", args.sources))
        print(f"config load: {time.perf_counter() - start:.1f} s", flush=True)
        store = Store(config.settings.database, config.settings.posts_dir)
        start = time.perf_counter()
        fill_index(store, args.sources)
        print(f"index filled: {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        store.sync_sources(config.sources, NOW)  # as the service does at start
        print(f"sources synced into the index: {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        store.sync_sources(config.sources, NOW)
        print(f"sync again, nothing changed: {time.perf_counter() - start:.1f} s", flush=True)
        client = create_app(config, store, clock=BenchClock()).test_client()
        empty_config = load_config(write_config(root / "empty", 0))
        empty_store = Store(empty_config.settings.database, empty_config.settings.posts_dir)
        empty = create_app(empty_config, empty_store).test_client()
        bare = Flask("bare")
        body = b"x" * 1024
        bare.add_url_rule("/", "bare", lambda: body)
        bare_client = bare.test_client()

        start = time.perf_counter()
        first = client.get("/")
        assert first.status_code == 200, first.get_data(as_text=True)[:500]
        print(
            f"first request (the view of the configuration built): "
            f"{(time.perf_counter() - start) * 1000:.0f} ms",
            flush=True,
        )
        floor_bare, _, _ = timed(lambda: bare_client.get("/").get_data(), args.rounds)
        floor_empty, _, empty_size = timed(lambda: empty.get("/").get_data(), args.rounds)
        print(f"floor: bare Flask 1 KB {floor_bare:.2f} ms")
        print(f"floor: empty overview  {floor_empty:.2f} ms ({empty_size:,} bytes)")
        print(f"{'url':38} {'median':>8} {'p90':>8} {'bytes':>9} {'×bare':>7} {'×empty':>7}")
        worst = 0.0
        for url in URLS:
            answer = client.get(url)
            assert answer.status_code == 200, (url, answer.status_code)
            median, p90, size = timed(lambda u=url: client.get(u).get_data(), args.rounds)
            worst = max(worst, median)
            print(
                f"{url:38} {median:7.1f}ms {p90:7.1f}ms {size:9,} "
                f"{median / floor_bare:7.1f} {median / floor_empty:7.1f}",
                flush=True,
            )
        print(f"slowest median: {worst:.1f} ms (target < 50 ms); sizes target < 100 KB")
        store.close()
        empty_store.close()


if __name__ == "__main__":
    main()
