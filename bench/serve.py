"""bench/serve: the cached category feed under load, beside a bare Flask app's ceiling.

For stores of 1,000 and 100,000 articles across 50 categories (generated straight into
the index), runs ``aggregator serve`` (waitress) and measures with wrk, 16 connections:
requests/s and p50/p99 latency of a 50-item category feed, as a plain GET and as a 304;
then the same two loads against a bare Flask app returning the same bytes from memory
under the same server (bench/bare_app.py). Prints the ratios and the server's resident
memory. Installs wrk (apt-get) on first use.

With ``--instructions N``: no server and no wrk, but N requests through each app's WSGI
callable in process (bench/wsgi_requests.py) under valgrind's callgrind, and the
instructions per request of ours against the bare app's: a ratio that other work on a
shared machine does not move (the wall-clock figures there spread by ±30%).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import urllib3

HERE = Path(__file__).resolve().parent
from workload import ensure_tool, free_port, store_entries  # noqa: E402
from wsgi_requests import FEED  # noqa: E402

from aggregator.content.convert import entry_uid  # noqa: E402
from aggregator.store import Store  # noqa: E402
from aggregator.store.records import EntryRow  # noqa: E402

SECTIONS, SITES, FEEDS = 5, 2, 5  # 50 leaf categories
THREADS = 4


def ensure_wrk() -> str:
    return ensure_tool("wrk")


def categories() -> list[tuple[str, str, str]]:
    return [
        (f"板块{a}", f"站点{a}-{b}", f"频道{a}-{b}-{c}")
        for a in range(SECTIONS)
        for b in range(SITES)
        for c in range(FEEDS)
    ]


def make_store(root: Path, articles: int) -> Path:
    """A config and an index holding ``articles`` entries spread over 50 categories."""
    root.mkdir(parents=True)
    lines = [
        "settings:",
        f"  posts_dir: {root / 'posts'}",
        f"  database: {root / 'index.sqlite'}",
        "  server:",
        f"    threads: {THREADS}",
        "sources:",
    ]
    for n, path in enumerate(categories()):
        lines += [
            f"  - url: {root / f'feed{n}.xml'}",
            f"    categories: [{', '.join(path)}]",
            f"    name: s{n}",
        ]
    config = root / "config.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = Store(str(root / "index.sqlite"), str(root / "posts"))
    rng = random.Random(articles)
    paragraph = "<p>　　" + "数字化转型创新基地正式揭牌，吸引更多企业集聚。" * 6 + "</p>\n"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cats = categories()
    batch: list[EntryRow] = []  # written by store_entries, 5,000 to a transaction
    for n in range(articles):
        source = n % len(cats)
        when = start + timedelta(minutes=n)
        key = f"https://example.cn/{source}/{n}.html"
        batch.append(
            EntryRow(
                source=f"s{source}",
                key=key,
                alt_key=key + "#",
                uid=entry_uid(f"s{source}", key),
                path=None,
                title=f"第{n}号文章 {rng.choice(['市场', '政策', '科技'])}",
                link=key,
                author=cats[source][1],
                categories=cats[source],
                tags=("bench",),
                headimg="",
                summary="数字化转型创新基地正式揭牌",
                body_html="<div>" + paragraph * 5 + "</div>",
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
    store.close()
    return config


def wait_ready(url: str) -> bytes:
    http = urllib3.PoolManager()
    for _ in range(300):
        try:
            response = http.request("GET", url, retries=False)
            if response.status == 200:
                return response.data
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


def wrk(url: str, seconds: int, header: str | None = None) -> tuple[float, float, float]:
    command = [ensure_wrk(), "-t2", "-c16", f"-d{seconds}s", "--latency", url]
    if header:
        command[1:1] = ["-H", header]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return rate, ms("50%"), ms("99%")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, url: str, seconds: int, etag: str) -> dict[str, tuple[float, float, float]]:
    get = wrk(url, seconds)
    not_modified = wrk(url, seconds, f"If-None-Match: {etag}")
    print(
        f"{name:<34} GET {get[0]:7.0f} req/s p50 {get[1]:6.2f} ms p99 {get[2]:6.2f} ms | "
        f"304 {not_modified[0]:7.0f} req/s p50 {not_modified[1]:6.2f} ms p99 {not_modified[2]:6.2f} ms",
        flush=True,
    )
    return {"get": get, "304": not_modified}


def callgrind(which: str, kind: str, count: int, config: Path, body_file: Path) -> int:
    """Instructions (callgrind's "I refs") of a process making ``count`` requests."""
    out = config.parent / f"callgrind.{which}.{kind}.{count}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(HERE / "wsgi_requests.py"),
        which,
        kind,
        str(count),
        str(config),
        str(body_file),
    ]
    # One hash seed: with another each run, dicts and sets lay out otherwise and the
    # start-up's count moves by millions, more than 1,000 requests' difference.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    log = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", log)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{log}")
    return int(found.group(1).replace(",", ""))


def instructions(root: Path, count: int) -> None:
    """Instructions per request of the cached feed (GET and 304) through our app and
    the bare app, in process (bench/wsgi_requests.py), counted by callgrind: the
    difference between ``count`` requests and none, divided by ``count``."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    config = make_store(root / "store-instructions", 1000)
    from aggregator.config import load_config
    from aggregator.web import create_app

    body = create_app(load_config(config)).test_client().get(unquote(FEED)).get_data()
    body_file = root / "body-instructions.xml"
    body_file.write_bytes(body)
    per: dict[tuple[str, str], float] = {}
    for kind in ("get", "304"):
        for which in ("ours", "bare"):
            base = callgrind(which, kind, 0, config, body_file)
            total = callgrind(which, kind, count, config, body_file)
            per[which, kind] = (total - base) / count
            print(
                f"{which:4} {kind:3}: {per[which, kind]:9,.0f} instructions a request", flush=True
            )
        print(
            f"  {kind}: the bare app's instructions are {per['bare', kind] / per['ours', kind]:.0%}"
            " of ours (the request rate it allows, in process: aim >= 85%)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument(
        "--instructions",
        type=int,
        metavar="N",
        help="instead: callgrind's instruction count of N in-process requests, ours and "
        "the bare app's (noise-free on a shared machine)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    if args.instructions:
        try:
            instructions(root, args.instructions)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            start = time.perf_counter()
            config = make_store(root / f"store-{size}", size)
            print(
                f"store of {size} articles in 50 categories built in "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
            port = free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aggregator",
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}{FEED}"
                body = wait_ready(url)
                etag = urllib3.request("GET", url).headers["ETag"]
                items = body.count(b"<item>")
                assert items == 50, items
                ours = measure(f"aggregator serve ({size} articles)", url, args.seconds, etag)
                memory = rss_mb(server.pid)
            finally:
                server.terminate()
                server.wait(timeout=30)
            body_file = root / f"body-{size}.xml"
            body_file.write_bytes(body)
            port = free_port()
            bare = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "bare_app.py"),
                    str(body_file),
                    str(port),
                    str(THREADS),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                bare_url = f"http://127.0.0.1:{port}/feed"
                wait_ready(bare_url)
                ceiling = measure(
                    f"bare Flask app, same bytes ({len(body)} B)", bare_url, args.seconds, '"bare"'
                )
            finally:
                bare.terminate()
                bare.wait(timeout=30)
            print(
                f"  ratio to the bare app: GET {ours['get'][0] / ceiling['get'][0]:.0%}, "
                f"304 {ours['304'][0] / ceiling['304'][0]:.0%} (aim >= 85%); "
                f"server RSS {memory:.0f} MB (aim < 200 MB); p99 GET {ours['get'][2]:.1f} ms, "
                f"{ours['get'][2] / ceiling['get'][2]:.2f}x the bare app's (aim <= 1.3x)",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
