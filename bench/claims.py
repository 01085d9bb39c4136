"""bench/claims: the claim loop's statements on an index of 100,000 sources.

Each round claims a batch (100 due sources, at most 2 per host over 5,000 hosts), ends
every claim and sets its next time, in one transaction each, as the service's tick and
its polls' records do; the floor is a bare read of the same 100 due rows (sqlite3, no
lease, no cap) from the same file in the same run. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.store import Store, claims

START = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "index.sqlite")
        store = Store(database, str(Path(folder) / "posts"))
        spacing = 3600 / args.sources  # every source due once in the hour
        with store.transaction() as conn:
            claims.add_missing(
                conn,
                {
                    f"s{n:06}": (
                        f"http://h{n % 5000}.example/f{n}",
                        START + timedelta(seconds=n * spacing),
                    )
                    for n in range(args.sources)
                },
            )
        raw = sqlite3.connect(database)
        tick, alone, floor = [], [], []
        for k in range(args.rounds):
            at = START + timedelta(seconds=60 * (k + 1))
            began = time.perf_counter()
            raw.execute(
                "SELECT name, url, next_poll_at FROM sources WHERE next_poll_at <= ? "
                "AND lease_token IS NULL ORDER BY next_poll_at, name LIMIT ?",
                (at.isoformat(timespec="microseconds"), args.batch),
            ).fetchall()
            floor.append(time.perf_counter() - began)
            began = time.perf_counter()
            with store.transaction() as conn:
                got = claims.claim(
                    conn, at, limit=args.batch, per_host=2, lease=timedelta(seconds=320)
                )
                alone.append(time.perf_counter() - began)
                for claim in got:
                    claims.release(conn, claim.name, claim.token)
                claims.set_next(conn, {c.name: at + timedelta(hours=1) for c in got})
            tick.append(time.perf_counter() - began)
        raw.close()
        store.close()
    t, f = statistics.median(tick), statistics.median(floor)
    print(f"{args.sources} sources, batch {args.batch}, {args.rounds} rounds")
    print(f"claim + end + next time: median {t * 1000:.1f} ms per batch")
    print(f"the claim alone (no commit): median {statistics.median(alone) * 1000:.1f} ms")
    print(f"bare read of the batch:  median {f * 1000:.2f} ms  (ratio {t / f:.0f}x)")
    print(f"claims per second at most: {args.batch / t:.0f}")


if __name__ == "__main__":
    main()
