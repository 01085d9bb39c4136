"""bench/load: 1,000 sources polled on a short interval while 16 clients read for a minute.

A local nginx serves 1,000 feeds × 10 items (bench/poll's helpers start and stop it).
Phase 1 fills the store (`aggregator poll`) and measures the idle latency of a mix of
feeds and pages under `aggregator serve` (wrk, 16 connections). Phase 2 runs
`aggregator run` with a 10-second interval (≈100 polls/s, mostly 304) under the same
load for a minute; a tenth of the feeds gain an entry halfway through. Checks: zero
failed requests, zero lost entries, resident memory flat over the run, p99 within 3× the
idle figure. Everything stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workload import ensure_nginx, free_port, start_nginx  # noqa: E402

SOURCES, ITEMS = 1000, 10


def feed(n: int, extra: bool = False) -> str:
    items = []
    count = ITEMS + (1 if extra else 0)
    for i in range(count):
        items.append(
            f"<item><title><![CDATA[第{n}源第{i}条 新闻]]></title><guid>s{n}-i{i}</guid>"
            f"<pubDate>Mon, {1 + i:02d} Jan 2024 10:00:00 GMT</pubDate>"
            f"<description><![CDATA[<p>正文 {n}-{i}："
            + "内容" * 100
            + "</p>]]></description></item>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>源{n}</title>'
        f"<link>https://example.cn/{n}</link><description>d</description>{''.join(items)}"
        "</channel></rss>"
    )


def category(n: int) -> tuple[str, str, str]:
    leaf = n % 50
    return (f"板块{leaf // 10}", f"站点{leaf // 10}-{leaf // 5 % 2}", f"频道{leaf}")


def wrk_mix(base: str, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50%"),
        "p99": ms("99%"),
        "failed": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(x) for x in sockets.groups()) if sockets else 0,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_listening(log: Path) -> str:
    for _ in range(600):
        match = re.search(r"serving on (http://\S+)", log.read_text())
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="the loaded run (default 60)")
    args = parser.parse_args()
    ensure_nginx()
    shutil.which("wrk") or subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    port = free_port()
    www = root / "www"
    www.mkdir()
    for n in range(SOURCES):
        (www / f"s{n}.xml").write_text(feed(n), encoding="utf-8")
    nginx = start_nginx_at(root, port)
    try:
        lines = [
            "settings:",
            f"  posts_dir: {root / 'posts'}",
            f"  database: {root / 'index.sqlite'}",
            "  schedule: {interval: 10s, floor: 5s, startup_spread: 5, concurrency: 8, per_host: 8}",
            "  server: {port: 0, threads: 4}",
            "sources:",
        ]
        for n in range(SOURCES):
            lines += [
                f"  - url: http://127.0.0.1:{port}/s{n}.xml",
                f"    categories: [{', '.join(category(n))}]",
                f"    name: s{n}",
            ]
        config = root / "config.yaml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {**os.environ}
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "aggregator", "poll", "--config", str(config)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        print(
            f"cold poll of {SOURCES} sources × {ITEMS} items: {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        paths = [
            "/feeds/all.rss",
            "/feeds/" + quote("板块0") + ".atom",
            "/feeds/" + quote("板块1/站点1-0") + ".rss",
            "/feeds/" + quote("板块2/站点2-1/频道25") + ".json",
            "/",
            "/healthz",
            "/sources/s7",
        ]
        script = root / "mix.lua"
        script.write_text(
            "local paths = {" + ", ".join(f'"{p}"' for p in paths) + "}\n"
            "local i = 0\nrequest = function()\n  i = i + 1\n"
            "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n",
            encoding="utf-8",
        )
        log = root / "serve.log"
        with log.open("wb") as err:
            serve = subprocess.Popen(
                [sys.executable, "-m", "aggregator", "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        try:
            base = wait_listening(log)
            idle = wrk_mix(base, 15, script)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
        print(
            f"idle (serve, no polling): {idle['rate']:.0f} req/s, p50 {idle['p50']:.1f} ms, "
            f"p99 {idle['p99']:.1f} ms, failed {idle['failed']}",
            flush=True,
        )

        log = root / "run.log"
        with log.open("wb") as err:
            run = subprocess.Popen(
                [sys.executable, "-m", "aggregator", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(5):
                samples.append(rss_mb(run.pid))

        def add_entries() -> None:
            if not stop.wait(args.seconds / 2):
                for n in range(0, SOURCES, 10):
                    (www / f"s{n}.xml").write_text(feed(n, extra=True), encoding="utf-8")

        try:
            base = wait_listening(log)
            threads = [threading.Thread(target=sample), threading.Thread(target=add_entries)]
            for thread in threads:
                thread.start()
            loaded = wrk_mix(base, args.seconds, script)
            time.sleep(15)  # the last changed feeds are polled (interval 10 s)
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            stop.set()
            run.send_signal(signal.SIGTERM)
            code = run.wait(timeout=120)
        database = sqlite3.connect(root / "index.sqlite")
        entries = database.execute("SELECT count(*) FROM entries").fetchone()[0]
        polls = database.execute("SELECT value FROM meta WHERE key = 'polls_total'").fetchone()[0]
        errors = database.execute(
            "SELECT value FROM meta WHERE key = 'poll_errors_total'"
        ).fetchone()[0]
        database.close()
        expected = SOURCES * ITEMS + SOURCES // 10
        warm = samples[2:] or samples
        third = max(1, len(warm) // 3)
        growth = max(warm[-third:]) / max(warm[:third]) if warm else float("nan")
        print(
            f"loaded (run, polling every ~10 s): {loaded['rate']:.0f} req/s, p50 {loaded['p50']:.1f} ms, "
            f"p99 {loaded['p99']:.1f} ms over {loaded['requests']} requests; failed "
            f"{loaded['failed']}, socket errors {loaded['socket_errors']}"
        )
        print(
            f"polls recorded: {polls} ({errors} errors); entries {entries} of {expected} expected; "
            f"run exit code {code}"
        )
        print("resident memory (MB, every 5 s): " + " ".join(f"{m:.0f}" for m in samples))
        print(
            f"checks: failed requests {loaded['failed'] + loaded['socket_errors']} (aim 0); lost entries "
            f"{expected - entries} (aim 0); memory growth {growth:.2f}x (aim flat, <= 1.2); "
            f"p99 {loaded['p99'] / idle['p99']:.1f}x idle (aim <= 3)"
        )
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def start_nginx_at(root: Path, port: int) -> subprocess.Popen[bytes]:
    """bench/poll's nginx, serving root/www (its first probe asks for feed-000.xml)."""
    (root / "www" / "feed-000.xml").write_text(feed(0), encoding="utf-8")
    return start_nginx(root, port)


if __name__ == "__main__":
    main()
