"""bench/poll: polling 200 feeds × 30 items over HTTP from a local nginx, cold and warm.

Measures, in one run and on the same URLs:
  * aggregator cold poll (every entry new: fetch, parse, clean, write, index) and warm
    poll (every feed answers 304 to our conditional GET);
  * lemon24/reader ``update_feeds`` cold and warm (``scheduled=False``), at the best of
    several worker counts (installed into its own virtualenv under bench/out/);
  * the network floor: a bare concurrent conditional GET of every URL (urllib3, threads).
nginx (Debian's package) is started on a free loopback port and stopped by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workload import FEEDS, ITEMS, free_port, start_nginx, write_feeds  # noqa: E402

from aggregator.config import load_config  # noqa: E402
from aggregator.poll.pipeline import Poller  # noqa: E402
from aggregator.store import Store  # noqa: E402


def reader_python() -> Path:
    """A virtualenv with lemon24/reader (benchmark-only; never a project dependency)."""
    home = HERE / "out" / "reader-venv"
    python = home / "bin" / "python"
    if not python.exists():
        print("installing lemon24/reader into bench/out/reader-venv ...", flush=True)
        venv.create(home, with_pip=True)
        # reader's feedparser needs sgmllib3k beside it, or every feed fails.
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "reader", "sgmllib3k"], check=True
        )
    return python


def run_reader(urls: list[str], root: Path, workers: int) -> dict[str, float]:
    db = root / f"reader-{workers}.sqlite"
    out = subprocess.run(
        [str(reader_python()), str(HERE / "reader_driver.py"), str(db), str(workers), *urls],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["entries"] == FEEDS * ITEMS and result["broken"] == 0, result
    return result


def bare_conditional_get(urls: list[str], threads: int) -> float:
    http = urllib3.PoolManager(maxsize=threads)
    etags = {u: http.request("GET", u).headers["ETag"] for u in urls}
    start = time.perf_counter()

    def get(url: str) -> int:
        return http.request("GET", url, headers={"If-None-Match": etags[url]}).status

    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(get, urls))
    elapsed = time.perf_counter() - start
    assert set(statuses) == {304}, set(statuses)
    return elapsed


def run_ours(urls: list[str], root: Path, per_host: int) -> tuple[float, float]:
    work = root / f"ours-{per_host}"
    work.mkdir()
    lines = [
        "settings:",
        f"  posts_dir: {work / 'posts'}",
        f"  database: {work / 'index.sqlite'}",
        "  schedule:",
        f"    per_host: {per_host}",
        "    concurrency: 16",
        "sources:",
    ]
    for n, url in enumerate(urls):
        lines += [
            f"  - url: {url}",
            f"    categories: [金融, 新浪财经, 频道{n}]",
            "    remove: ['.appendQr_wrap', '.ori_titlesource', '.article-editor']",
        ]
    (work / "config.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = load_config(work / "config.yaml")
    store = Store(config.settings.database, config.settings.posts_dir)
    poller = Poller(config, store)
    start = time.perf_counter()
    cold = poller.poll_sources(config.sources)
    cold_time = time.perf_counter() - start
    assert all(o.ok for o in cold) and sum(o.new for o in cold) == FEEDS * ITEMS
    start = time.perf_counter()
    warm = poller.poll_sources(config.sources)
    warm_time = time.perf_counter() - start
    assert all(o.not_modified and o.http_status == 304 for o in warm), warm[:2]
    poller.close()
    store.close()
    return cold_time, warm_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reader-workers",
        default="1,4,16",
        help="worker counts to try for reader (best is reported)",
    )
    parser.add_argument("--threads", type=int, default=16, help="bare GET concurrency")
    parser.add_argument("--skip-reader", action="store_true")
    args = parser.parse_args()
    entries = FEEDS * ITEMS
    root = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    port = free_port()
    write_feeds(root / "www")
    nginx = start_nginx(root, port)
    try:
        urls = [f"http://127.0.0.1:{port}/feed-{n:03d}.xml" for n in range(FEEDS)]
        print(
            f"workload: {FEEDS} feeds x {ITEMS} items = {entries} entries from nginx on "
            f"127.0.0.1:{port}; cpus={os.cpu_count()}"
        )
        floor = bare_conditional_get(urls, args.threads)
        print(
            f"floor: bare conditional GET of {FEEDS} URLs ({args.threads} threads): {floor:.3f} s"
        )
        results = {}
        for per_host in (2, 16):
            cold, warm = run_ours(urls, root, per_host)
            results[per_host] = (cold, warm)
            print(
                f"aggregator (per_host={per_host:>2}): cold {cold:6.2f} s = "
                f"{entries / cold:6.0f} entries/s; warm (all 304) {warm:.3f} s "
                f"= {warm / floor:.2f}x floor"
            )
        if not args.skip_reader:
            best = None
            for workers in (int(w) for w in args.reader_workers.split(",")):
                r = run_reader(urls, root, workers)
                print(
                    f"reader (workers={workers:>2}): cold {r['cold']:6.2f} s = "
                    f"{entries / r['cold']:6.0f} entries/s; warm {r['warm']:.3f} s"
                )
                if best is None or r["cold"] < best[1]["cold"]:
                    best = (workers, r)
            assert best is not None
            workers, r = best
            cold_default = results[2][0]
            print(
                f"cold ratio aggregator/reader (reader's best, workers={workers}): "
                f"{r['cold'] / cold_default:.2f}x reader's entries/s (aim >= 2)"
            )
            print(
                f"warm: aggregator {results[2][1]:.3f} s, reader {r['warm']:.3f} s, "
                f"floor {floor:.3f} s"
            )
        print(f"warm ratio aggregator/floor: {results[2][1] / floor:.2f} (aim <= 1.5)")
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
