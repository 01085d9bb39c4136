"""bench/open: opening an up-to-date index (``Store(...)``), as every command and process does.

An index of 10,000 entries is made in ``--folder`` (kept, so another checkout's code can
open the same file: ``PYTHONPATH=OTHER python bench/open.py --folder F``), opened once to
warm up, then opened and closed ``--opens`` times. An open runs the integrity check and
brings the schema to head (at head: one query). Prints the total and the median.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from aggregator.store import Store

WHEN = "2026-01-01T00:00:00.000000+00:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--opens", type=int, default=20)
    args = parser.parse_args()
    database, posts = str(args.folder / "index.sqlite"), str(args.folder / "posts")
    if not Path(database).exists():
        Store(database, posts).close()
        with sqlite3.connect(database) as conn:
            conn.executemany(
                "INSERT INTO entries (source, key, alt_key, uid, path, body_html, date, "
                "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (f"s{n % 100}", f"k{n}", f"a{n}", f"u{n}", f"p/{n}.md", "<p>x</p>" * 250)
                    + (WHEN,) * 3
                    for n in range(args.entries)
                ),
            )
    Store(database, posts).close()  # imports, and any pending revision
    times = []
    for _ in range(args.opens):
        start = time.perf_counter()
        Store(database, posts).close()
        times.append(time.perf_counter() - start)
    print(
        f"{args.opens} opens: {sum(times) * 1000:.0f} ms, "
        f"median {statistics.median(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
