"""bench/scale: the whole service with 100,000 sources, each figure beside its floor.

Workload (generated, seeded: every run measures the same bytes): N small RSS feeds on a
local nginx, spread over N/20 hosts — nginx listens on a bare port, so every address of
127.0.0.0/8 reaches it and ``http://127.A.B.C:PORT/`` is a host of its own (the per-host
cap and the ``host`` column mean something). Sizes: most feeds 3–10 items, a tenth 30,
one in a hundred 150. On the warm pass most answer 304 (nginx's ETag and Last-Modified), one
in twenty has changed (two new items written before the pass), one in twelve answers 200
with the same bytes (a location with ``etag off; if_modified_since off``), and one host
in 64 is slow: its feeds come from a small asyncio server in this process that waits
``--slow-delay`` seconds before each answer (the per-host cap holds, so a slow host
should not stall the others).

The service is the real one: ``aggregator run`` in a subprocess, on a generated config
of ``include:`` files (schedule defaults but ``startup_spread: 0``, so every source is
due at once), watched through a read-only connection to its index. Measured, each
beside its floor from the same run:
  * config load: ``aggregator check-config`` vs a process that only parses the same YAML
    files with libyaml (bench/config's floor), both from process start, median of 3;
  * start-up: process start until the claim loop's first claim (and until the web
    answers), vs the same YAML floor;
  * cold pass: first claim until every source has a poll recorded, vs a bare concurrent
    GET of every URL (urllib3, ``schedule.concurrency`` threads, the fetcher's pool
    sizes) plus a bare ``feedparser.parse`` of every document in as many processes as
    the service parses in;
  * warm pass: every source made due again (an UPDATE of ``next_poll_at``, which the
    claim loop reads each tick) until every source has polled again, vs the bare
    conditional GET of every URL with the validators of the first pass;
  * latency: p50/p99 of the overview (``/``, a category, a search) and ``/healthz``
    while the cold pass runs and when idle, vs a bare Flask app under the same waitress
    threads asked in turn with them (bench/bare_app.py);
  * memory: the service's peak RSS (VmHWM) vs a Python process that only loaded the
    config (its parse workers' peaks are printed beside, without a floor).
Prints a table (measure, absolute, floor, ratio) and writes it as JSON into bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import urllib3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workload import free_port, start_nginx  # noqa: E402

from aggregator.config import ScheduleSettings, ServerSettings  # noqa: E402

PER_HOST_FEEDS = 20  # feeds per host
PER_FILE = 1000  # sources per included config file (and feeds per www folder)
SLOW_EVERY = 64  # one host in this many is slow
NEW_ITEMS = 2  # items a changed feed gains before the warm pass
PROBES = ("/", "/?category=c7", "/?q=s00042", "/healthz")
BARE_PROBE = "/feed"
QUICK = 2000
YAML_FLOOR = "YAML parse process (yaml.load)"
PLAIN_LOCATION = """
        location /plain/ { etag off; if_modified_since off; }
"""


@dataclass(frozen=True, slots=True)
class Feed:
    """One generated source: where it lives and how it behaves on the warm pass."""

    index: int
    host: int  # its host's number (the address is ``host_address(host)``)
    items: int  # on the cold pass
    kind: str  # "static" (ETag: 304), "plain" (200, same bytes) or "slow" (304, late)
    changes: bool  # gains NEW_ITEMS before the warm pass (static feeds only)

    @property
    def name(self) -> str:
        return f"s{self.index:06d}"

    @property
    def path(self) -> str:
        """Its path under www/ (and on the server)."""
        return f"{self.kind}/{self.index // PER_FILE:03d}/{self.name}.xml"


def plan(count: int) -> list[Feed]:
    """The workload's feeds (deterministic: a feed's draws depend on its index only)."""
    hosts = max(1, count // PER_HOST_FEEDS)
    feeds = []
    for index in range(count):
        rng = random.Random(index)
        size, behaviour = rng.random(), rng.random()
        items = 150 if size < 0.01 else 30 if size < 0.11 else rng.randint(3, 10)
        host = index % hosts
        if host % SLOW_EVERY == 1:
            kind, changes = "slow", False
        elif behaviour < 1 / 12:
            kind, changes = "plain", False
        else:
            kind, changes = "static", behaviour > 1 - 1 / 20
        feeds.append(Feed(index, host, items, kind, changes))
    return feeds


def host_address(host: int) -> str:
    """A loopback address of its own for each host (127.0.0.0/8 is all loopback)."""
    return f"127.{1 + host // 62500}.{host // 250 % 250}.{1 + host % 250}"


def feed_url(feed: Feed, port: int, slow_port: int) -> str:
    return (
        f"http://{host_address(feed.host)}:{slow_port if feed.kind == 'slow' else port}/{feed.path}"
    )


def document(feed: Feed, version: int = 0) -> bytes:
    """The feed's RSS (``version`` 1: NEW_ITEMS more on top), short items like a blog's."""
    total = feed.items + NEW_ITEMS * version
    site = f"https://site{feed.host}.example/{feed.name}"
    items = "".join(
        f"<item><title>Post {n} of {feed.name}</title><link>{site}/post-{n}</link>"
        f"<guid>{site}/post-{n}</guid>"
        f"<pubDate>{_rfc822(feed.index, n)}</pubDate>"
        f"<description><![CDATA[<p>Post {n} of feed {feed.index}, with "
        f'<a href="/a/{n}">a link</a> and <em>some</em> words.</p><p>Two.</p>]]>'
        "</description></item>"
        for n in range(total - 1, -1, -1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>Feed {feed.index}</title><link>{site}/</link>"
        f"<description>scale</description>{items}</channel></rss>"
    ).encode()


def _rfc822(index: int, n: int) -> str:
    day, hour = 1 + n % 28, (index + n) % 24
    return f"{day:02d} {('Jan', 'Feb', 'Mar')[n // 28 % 3]} 2026 {hour:02d}:00:00 GMT"


def config_files(feeds: list[Feed], port: int, slow_port: int, work: Path) -> dict[str, str]:
    """The config (``config.yaml`` and ``sources.d/*.yaml``), as file name: text."""
    files = {
        "config.yaml": (
            "settings:\n"
            f"  posts_dir: {work / 'posts'}\n"
            f"  database: {work / 'index.sqlite'}\n"
            # Every source due at once; none due again during the passes.
            "  schedule: {startup_spread: 0, interval: 12h}\n"
            "  server: {port: 0}\n"
            "include: [sources.d/*.yaml]\n"
        )
    }
    for start in range(0, len(feeds), PER_FILE):
        lines = []
        for feed in feeds[start : start + PER_FILE]:
            lines += [
                f"- name: {feed.name}",
                f"  url: {feed_url(feed, port, slow_port)}",
                f"  categories: [c{feed.index % 50}, h{feed.host}]",
            ]
        files[f"sources.d/part{start // PER_FILE:04d}.yaml"] = "\n".join(lines) + "\n"
    return files


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- the servers -----------------------------------------------------------------------


def write_www(www: Path, feeds: Iterable[Feed], version: int = 0) -> None:
    for feed in feeds:
        path = www / feed.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(document(feed, version))


class SlowServer:
    """A minimal HTTP/1.1 server of www/ files that waits ``delay`` seconds before each
    answer (ETag and If-None-Match: a 304 is slow too), in a thread of its own."""

    def __init__(self, www: Path, port: int, delay: float) -> None:
        self.www, self.port, self.delay = www, port, delay
        self.loop = asyncio.new_event_loop()
        self.served = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "0.0.0.0", self.port, backlog=1024)
        )
        ready.set()
        self.loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
                }
                await asyncio.sleep(self.delay)
                writer.write(self._answer(path, headers.get("if-none-match")))
                await writer.drain()
                self.served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, path: str, etag_asked: str | None) -> bytes:
        file = self.www / path.lstrip("/")
        if ".." in path or not file.is_file():
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        body = file.read_bytes()
        etag = f'"{len(body):x}-{zlib.crc32(body):x}"'
        if etag_asked == etag:
            return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n".encode()
        return (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: {etag}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# -- floors ------------------------------------------------------------------------------


def bare_get_pass(
    urls: list[str], threads: int, per_host: int, validators: dict[str, dict[str, str]] | None
) -> tuple[float, dict[str, dict[str, str]], dict[int, int]]:
    """GET every URL from ``threads`` threads, at most ``per_host`` at once to a host, as
    the service does (conditional with ``validators``): seconds, each URL's validators,
    and the count of each status."""
    http = urllib3.PoolManager(num_pools=256, maxsize=per_host, block=False)
    hosts = {urlsplit(u).hostname for u in urls}
    caps = {h: threading.BoundedSemaphore(per_host) for h in hosts}
    seen: dict[str, dict[str, str]] = {}

    def get(url: str) -> int:
        headers = {}
        old = (validators or {}).get(url, {})
        if "etag" in old:
            headers["If-None-Match"] = old["etag"]
        if "last-modified" in old:
            headers["If-Modified-Since"] = old["last-modified"]
        with caps[urlsplit(url).hostname]:
            response = http.request("GET", url, headers=headers, retries=False, timeout=60)
        seen[url] = {
            k: response.headers[k] for k in ("etag", "last-modified") if k in response.headers
        }
        return int(response.status)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(get, urls))
    elapsed = time.perf_counter() - start
    return elapsed, seen, {s: statuses.count(s) for s in set(statuses)}


def _parse_files(paths: list[str]) -> int:
    return sum(len(feedparser.parse(Path(p).read_bytes()).entries) for p in paths)


def bare_parse_pass(paths: list[Path], workers: int) -> tuple[float, int]:
    """``feedparser.parse`` of every file in ``workers`` processes: seconds, entries."""
    chunks = [[str(p) for p in paths[i : i + 200]] for i in range(0, len(paths), 200)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_parse_files, chunks[:workers]))  # the processes start outside the time
        start = time.perf_counter()
        entries = sum(pool.map(_parse_files, chunks))
        return time.perf_counter() - start, entries


FLOOR_YAML = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from config import floor_events, floor_load
ready = time.perf_counter()
floor_load(Path(sys.argv[2]))
loaded = time.perf_counter()
floor_events(Path(sys.argv[2]))
print(loaded - ready, time.perf_counter() - loaded)
"""
FLOOR_CONFIG = """
import sys
from aggregator.config import load_config
load_config(sys.argv[1])
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
"""


def timed_process(command: list[str], rounds: int) -> tuple[float, str]:
    """The median wall time of ``command`` over ``rounds`` runs, and its last output."""
    times, out = [], ""
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        out = done.stdout
    return statistics.median(times), out


# -- the service -------------------------------------------------------------------------


class Index:
    """Read-only questions to the service's index (its own connection, WAL readers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def one(self, sql: str, *args: object) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        except sqlite3.OperationalError:
            return 0
        try:
            return int(conn.execute(sql, args).fetchone()[0] or 0)
        except sqlite3.OperationalError:  # no schema yet
            return 0
        finally:
            conn.close()

    def polled_since(self, iso: str) -> int:
        return self.one("SELECT count(*) FROM sources WHERE last_polled_at >= ?", iso)

    def make_all_due(self) -> str:
        """Every source due now (the claim loop reads next_poll_at each tick); the time."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        conn = sqlite3.connect(self.path, timeout=60)
        with conn:
            conn.execute("UPDATE sources SET next_poll_at = ? WHERE removed_at IS NULL", (now,))
        conn.close()
        return now


def wait_for(check: Callable[[], bool], timeout: float, step: float, what: str) -> float:
    """Seconds until ``check()`` holds (polled every ``step``); exits after ``timeout``."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.perf_counter() - start


def pass_time(index: Index, since: str, count: int, label: str, limit: float) -> float:
    """Seconds until all ``count`` sources polled since ``since``, with progress lines."""
    start = time.perf_counter()
    last_print = start
    while (done := index.polled_since(since)) < count:
        now = time.perf_counter()
        if now - start > limit:
            raise SystemExit(f"{label}: {done}/{count} polled after {limit:.0f} s")
        if now - last_print > 30:
            print(f"  {label}: {done}/{count} polled after {now - start:.0f} s", flush=True)
            last_print = now
        time.sleep(0.5)
    return time.perf_counter() - start


class Prober:
    """Asks the service's PROBES and the bare app's page in turn, in a thread, timing each,
    until stopped: the latency of the pages while something else runs."""

    def __init__(self, base: str, bare: str, pause: float = 0.2) -> None:
        self.base, self.bare, self.pause = base, bare, pause
        self.times: dict[str, list[float]] = {p: [] for p in (*PROBES, "bare")}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> Prober:
        self._stop.set()
        self._thread.join(120)
        return self

    def rounds(self, count: int) -> Prober:
        """``count`` rounds in this thread (the idle figures)."""
        http = urllib3.PoolManager()
        for _ in range(count):
            self._round(http)
        return self

    def _run(self) -> None:
        http = urllib3.PoolManager()
        while not self._stop.is_set():
            self._round(http)
            self._stop.wait(self.pause)

    def _round(self, http: urllib3.PoolManager) -> None:
        for label, url in [*((p, self.base + p) for p in PROBES), ("bare", self.bare)]:
            start = time.perf_counter()
            response = http.request("GET", url, retries=False, timeout=120)
            self.times[label].append((time.perf_counter() - start) * 1000)
            if response.status not in (200, 503) or (
                label != "/healthz" and response.status != 200
            ):
                self.errors.append(f"{url}: {response.status}")

    def summary(self) -> dict[str, tuple[float, float, int]]:
        """Per page: p50 and p99 in ms, and how many were asked."""
        return {k: (percentile(v, 0.5), percentile(v, 0.99), len(v)) for k, v in self.times.items()}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


@dataclass
class Row:
    """One line of the table."""

    measure: str
    absolute: float
    floor: float
    unit: str
    floor_name: str

    @property
    def ratio(self) -> float:
        return self.absolute / self.floor if self.floor else float("nan")


def iter_rows(rows: list[Row]) -> Iterator[str]:
    width = max(len(r.measure) for r in rows)
    yield f"{'measure':<{width}}  {'absolute':>12}  {'floor':>12}  {'ratio':>6}  floor is"
    for r in rows:
        yield (
            f"{r.measure:<{width}}  {r.absolute:>9.3f} {r.unit:<2}  {r.floor:>9.3f} {r.unit:<2}"
            f"  {r.ratio:>6.2f}  {r.floor_name}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100000, help="default 100,000")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run of {QUICK:,}")
    parser.add_argument("--slow-delay", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    count = QUICK if args.quick else args.sources
    schedule, server = ScheduleSettings(), ServerSettings()
    workers = os.cpu_count() or 1  # settings.workers 0: one parse process per CPU
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    www, work = root / "www", root / "work"
    port, slow_port, bare_port = free_port(), free_port(), free_port()
    results: dict[str, object] = {"sources": count, "load_before": os.getloadavg()}
    feeds = plan(count)
    kinds = {k: sum(f.kind == k for f in feeds) for k in ("static", "plain", "slow")}
    changed = [f for f in feeds if f.changes]
    expected = sum(f.items for f in feeds)
    print(
        f"workload: {count:,} feeds on {len({f.host for f in feeds}):,} hosts, {expected:,} "
        f"items; warm: {kinds['static'] - len(changed):,} answer 304, {len(changed):,} "
        f"changed, {kinds['plain']:,} same bytes without validators, {kinds['slow']:,} on "
        f"slow hosts ({args.slow_delay:g} s); cpus={os.cpu_count()}, load "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    start = time.perf_counter()
    write_www(www, feeds)
    (www / "probe.xml").write_bytes(b"<rss/>")
    for name, text in config_files(feeds, port, slow_port, work).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
    config = work / "config.yaml"
    print(f"generated in {time.perf_counter() - start:.1f} s under {root}", flush=True)
    nginx = start_nginx(
        root,
        port,
        listen=str(port),
        locations=PLAIN_LOCATION,
        connections=16384,
        probe="probe.xml",
    )
    slow = SlowServer(www, slow_port, args.slow_delay)
    body = root / "bare-body.xml"
    body.write_bytes(document(feeds[0]))
    bare = subprocess.Popen(
        [sys.executable, str(HERE / "bare_app.py"), str(body), str(bare_port), str(server.threads)]
    )
    service: subprocess.Popen[bytes] | None = None
    rows: list[Row] = []
    try:
        urls = [feed_url(f, port, slow_port) for f in feeds]
        rows += measure_config(config)
        get_cold, validators, statuses = bare_get_pass(
            urls, schedule.concurrency, schedule.per_host, None
        )
        assert statuses == {200: count}, statuses
        parse, entries = bare_parse_pass([www / f.path for f in feeds], workers)
        assert entries == expected, (entries, expected)
        print(
            f"floor: cold GET {get_cold:.1f} s, parse {parse:.1f} s ({workers} processes)",
            flush=True,
        )
        _, hwm = timed_process([sys.executable, "-c", FLOOR_CONFIG, str(config)], 1)
        config_mb = int(hwm.strip()) / 1024

        log = (root / "run.log").open("wb")
        started = time.perf_counter()
        service = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        index = Index(work / "index.sqlite")
        run_log = root / "run.log"
        web_up = wait_for(
            lambda: "serving on" in run_log.read_text(errors="replace"), 600, 0.02, "the web"
        )
        base = re.search(r"serving on (http://\S+?)/?\s", run_log.read_text()).group(1)  # type: ignore[union-attr]
        epoch = "0000"
        wait_for(
            lambda: (
                index.one(
                    "SELECT count(*) FROM sources WHERE lease_token IS NOT NULL OR last_polled_at IS NOT NULL"
                )
                > 0
            ),
            600,
            0.02,
            "the first claim",
        )
        startup = time.perf_counter() - started
        prober = Prober(base, f"http://127.0.0.1:{bare_port}{BARE_PROBE}").start()
        cold = pass_time(index, epoch, count, "cold pass", 20 * 3600)
        loaded = prober.stop().summary()
        cold_errors = index.one("SELECT count(*) FROM sources WHERE last_error IS NOT NULL")
        cold_entries = index.one("SELECT count(*) FROM entries")
        print(
            f"cold pass: {cold:.1f} s, {cold_entries:,} entries, {cold_errors} errors", flush=True
        )
        idle = Prober(base, f"http://127.0.0.1:{bare_port}{BARE_PROBE}").rounds(30).summary()

        write_www(www, changed, version=1)
        get_warm, _, warm_statuses = bare_get_pass(
            urls, schedule.concurrency, schedule.per_host, validators
        )
        print(f"floor: warm conditional GET {get_warm:.1f} s {warm_statuses}", flush=True)
        since = index.make_all_due()
        warm = pass_time(index, since, count, "warm pass", 20 * 3600)
        warm_errors = index.one("SELECT count(*) FROM sources WHERE last_error IS NOT NULL")
        warm_entries = index.one("SELECT count(*) FROM entries")
        peak = peak_rss_mb(service.pid)
        workers_peak = sum(peak_rss_mb(p) for p in descendants(service.pid))
    finally:
        if service is not None:
            service.send_signal(signal.SIGTERM)
            service.wait(120)
        bare.terminate()
        bare.wait(10)
        slow.stop()
        nginx.terminate()
        nginx.wait(10)
    results["load_after"] = os.getloadavg()
    floor_yaml = rows[0].floor
    rows += [
        Row("start-up: process to first claim", startup, floor_yaml, "s", YAML_FLOOR),
        Row("start-up: process to web answering", web_up, floor_yaml, "s", YAML_FLOOR),
        Row(
            "cold pass (first claim to all polled)",
            cold,
            get_cold + parse,
            "s",
            "bare GET + feedparser",
        ),
        Row("warm pass (all due to all polled)", warm, get_warm, "s", "bare conditional GET"),
    ]
    rows += [
        Row(
            f"{label} {name} {what}",
            summary[label][i],
            summary["bare"][i],
            "ms",
            f"bare Flask {name}",
        )
        for label in PROBES
        for what, summary in (("under load", loaded), ("idle", idle))
        for i, name in enumerate(("p50", "p99"))
    ]
    rows.append(Row("peak RSS (VmHWM)", peak, config_mb, "MB", "process that loaded the config"))
    problems = []
    if cold_entries != expected:
        problems.append(f"cold pass: {cold_entries:,} entries, expected {expected:,}")
    if warm_entries != expected + NEW_ITEMS * len(changed):
        problems.append(
            f"warm pass: {warm_entries:,} entries, expected {expected + NEW_ITEMS * len(changed):,}"
        )
    if cold_errors or warm_errors:
        problems.append(f"sources with errors: {cold_errors} after cold, {warm_errors} after warm")
    problems += prober.errors[:5]
    print()
    for line in iter_rows(rows):
        print(line)
    print(
        f"cold: {count / cold:,.0f} sources/s, {cold_entries / cold:,.0f} entries/s; warm: "
        f"{count / warm:,.0f} sources/s; floor GET statuses warm {warm_statuses}; parse "
        f"workers' peak RSS {workers_peak:.0f} MB (sum); pages asked under load "
        f"{loaded['/'][2]} rounds; load average after "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    results.update(
        rows=[{**asdict(r), "ratio": r.ratio} for r in rows],
        problems=problems,
        workers_peak_mb=workers_peak,
        slow_delay=args.slow_delay,
        kinds=kinds,
        changed=len(changed),
        items=expected,
    )
    out = HERE / "out" / f"scale-{count}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if problems:
        raise SystemExit(1)


def measure_config(config: Path) -> list[Row]:
    """check-config against its floors: a Python process that imports PyYAML and parses
    the same files with libyaml, to objects (``yaml.load``, CSafeLoader: the usual way)
    and as the bare event stream (nothing that reads YAML in Python beats it). Both are
    bench/config's, timed inside a process, plus the start of one that only imports yaml.
    """
    rounds = 3
    start, _ = timed_process([sys.executable, "-c", "import yaml"], rounds)
    parses = [
        [
            float(x)
            for x in timed_process([sys.executable, "-c", FLOOR_YAML, str(HERE), str(config)], 1)[
                1
            ].split()
        ]
        for _ in range(rounds)
    ]
    load, events = (start + statistics.median(p[i] for p in parses) for i in (0, 1))
    check, _ = timed_process(
        [sys.executable, "-m", "aggregator", "check-config", "--config", str(config)], rounds
    )
    print(
        f"config load: check-config {check:.2f} s, YAML floors {load:.2f} s, {events:.2f} s",
        flush=True,
    )
    return [
        Row("config load (check-config)", check, load, "s", YAML_FLOOR),
        Row("config load (check-config)", check, events, "s", "YAML event stream process"),
    ]


if __name__ == "__main__":
    main()
