"""bench/readers: sources read by key from the index (``Store.sources_by_key``) at 100,000.

A config of 100,000 sources (5,000 hosts, an interval and a remove rule each) is synced
into a fresh index; each round reads a batch of 100 random keys, as the claim loop does
for each tick's claims: with this process's own config (its objects are used when the
fingerprint matches), from the rows alone with the validation cache cold (every row
validated again), and with it warm; and one key alone (a refresh, a source page). The
floor is the same rows' SELECT through the same read connection. Prints medians and the
ratios to the floor; then the cost of ``aggregator poll``'s leases (``PassLeases``) for
10,000 of the sources.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from aggregator.config import Config, SourceConfig
from aggregator.poll.leases import PassLeases
from aggregator.store import Store
from aggregator.store.catalog import ValidatedSources
from aggregator.store.schema import sources_table


def make_sources(count: int) -> tuple[SourceConfig, ...]:
    return tuple(
        SourceConfig.model_validate(
            {
                "url": f"https://h{n % 5000}.example/f{n}",
                "categories": ["News", f"site{n % 5000}", f"s{n:06}"],
                "interval": "2h",
                "remove": ["div.ad"],
            }
        )
        for n in range(count)
    )


def median_of(rounds: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1)
    sources = make_sources(args.sources)
    config = Config(sources=sources)
    config.source(sources[0].key)  # its lookup table, built once per config

    def keys(within: int = args.sources) -> list[str]:
        return [f"s{rng.randrange(within):06}" for _ in range(args.batch)]

    with tempfile.TemporaryDirectory() as folder:
        store = Store(str(Path(folder) / "index.sqlite"), str(Path(folder) / "posts"))
        store.sync_sources(sources, datetime.now(UTC))
        t = sources_table

        def floor_read() -> None:
            with store.reading() as conn:
                columns = (t.c.name, t.c.settings, t.c.fingerprint)
                conn.execute(sa.select(*columns).where(t.c.name.in_(keys()))).all()

        def cold() -> None:
            store.__dict__["validated_sources"] = ValidatedSources()  # a fresh cache
            store.sources_by_key(keys())

        floor = median_of(args.rounds, floor_read)
        own = median_of(args.rounds, lambda: store.sources_by_key(keys(), config))
        fresh = median_of(args.rounds, cold)
        warm_keys = min(args.sources, 16_000)  # what the cache holds
        store.sources_by_key([s.key for s in sources[:warm_keys]])
        warm = median_of(args.rounds, lambda: store.sources_by_key(keys(warm_keys)))
        one = median_of(args.rounds * 4, lambda: store.source_by_key(keys()[0], config))
        # aggregator poll's leases: 10,000 sources claimed in chunks of 100, then released.
        passed = [s.key for s in sources[:10_000]]
        leases = PassLeases(store, passed, timedelta(seconds=320), lambda: datetime.now(UTC), 100)
        began = time.perf_counter()
        for key in passed:
            leases.take(key)
        claimed = time.perf_counter() - began
        began = time.perf_counter()
        leases.close()
        released = time.perf_counter() - began
        store.close()
    print(f"{args.sources} sources, batches of {args.batch}, {args.rounds} rounds (medians)")
    print(f"floor, the rows' SELECT:       {floor * 1000:.2f} ms per batch")
    for label, value in (
        ("own config (its objects):", own),
        ("rows, cache cold (validated):", fresh),
        ("rows, cache warm:", warm),
    ):
        per = value / args.batch * 1e6
        print(f"{label:<31}{value * 1000:.2f} ms  ({per:.0f} us a source, {value / floor:.2f}x)")
    print(f"one key (own config):          {one * 1e6:.0f} us")
    each = 1e6 / len(passed)
    print(
        f"poll's leases, {len(passed)} sources: {claimed * each:.0f} us a source to claim "
        f"(chunks of 100), {released * each:.0f} us to release"
    )


if __name__ == "__main__":
    main()
