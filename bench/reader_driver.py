"""Runs lemon24/reader on the benchmark's URLs (executed by bench/poll in reader's own venv).

Usage: python reader_driver.py DB_PATH WORKERS URL... ; prints one JSON line of timings.
"""

import json
import sys
import time

from reader import make_reader


def main() -> None:
    db_path, workers, urls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    reader = make_reader(db_path)
    for url in urls:
        reader.add_feed(url)
    start = time.perf_counter()
    reader.update_feeds(workers=workers)
    cold = time.perf_counter() - start
    entries = reader.get_entry_counts().total
    start = time.perf_counter()
    # scheduled=False: otherwise feeds not yet due are skipped and nothing is fetched.
    reader.update_feeds(workers=workers, scheduled=False)
    warm = time.perf_counter() - start
    broken = sum(1 for f in reader.get_feeds() if f.last_exception)
    reader.close()
    print(json.dumps({"cold": cold, "warm": warm, "entries": entries, "broken": broken}))


if __name__ == "__main__":
    main()
