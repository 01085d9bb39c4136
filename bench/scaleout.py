"""bench/scaleout: 1, 2 and 4 pollers on one PostgreSQL, each run beside the 1-poller one.

Workload: bench/scale's generated feeds (seeded: the same bytes every run) on a local
nginx, N sources (default 5,000) on N/20 loopback hosts, without its slow hosts (a slow
host's feeds would measure the host). For each number of pollers, a fresh PostgreSQL
database and the roles as a deployment runs them, each a process of its own:
``aggregator sync-config``, one ``aggregator export`` into a posts folder, one
``aggregator serve`` replica and K ``aggregator poller`` processes. Measured per run:

  * cold pass: the pollers' start until every source has a poll recorded (polls/s), and
    its ratio to the 1-poller run's;
  * warm pass: every source made due again (an UPDATE of ``next_poll_at``) until each has
    polled again: mostly 304s, the claim loop's own cost (polls/s, ratio);
  * claim lateness over both passes, p50 and p99 (``claims.late``: now − next_poll_at at
    each claim);
  * PostgreSQL: rows written (``pg_stat_database``: inserted + updated + deleted) and WAL
    bytes (``pg_current_wal_lsn``) per second of the passes;
  * the exporter: the most outbox rows waiting at once, and its lag: the seconds from the
    last poll's commit until the outbox is empty;
  * the replica's ``/`` and a category feed, p50 and p99, while the cold pass runs.

The machine's number of cores bounds what more pollers can give: on 2 cores, with
PostgreSQL, the exporter and the replica on the same cores, 4 pollers share 2 CPUs.
Prints a table per run and writes the figures as JSON into bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import urllib3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale import Feed, config_files, percentile, plan, write_www  # noqa: E402
from workload import free_port, start_nginx  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PROBES = ("/", "/feeds/c7.rss")


@dataclass
class Run:
    """One deployment's figures."""

    pollers: int
    cold_s: float = 0.0
    warm_s: float = 0.0
    late_p50: float = 0.0
    late_p99: float = 0.0
    rows: int = 0
    wal_bytes: int = 0
    outbox_peak: int = 0
    export_lag_s: float = 0.0
    web: dict[str, tuple[float, float, int]] = field(default_factory=dict)


class Database:
    """A fresh database on the server for one run, dropped afterwards."""

    def __init__(self, server: str, name: str) -> None:
        self.server, self.name = server, name
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.url = server.rsplit("/", 1)[0] + "/" + name
        self.conn = psycopg.connect(self.url, autocommit=True)

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    def one(self, sql: str, *args: object) -> Any:
        try:
            row = self.conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return 0
        return row[0] if row else 0

    def activity(self) -> tuple[int, int]:
        """Rows written so far in this database, and the server's WAL position (bytes)."""
        rows = self.one(
            "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        wal = self.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
        return int(rows), int(wal)

    def drop(self) -> None:
        self.conn.close()
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Role:
    """An ``aggregator`` command in a process of its own."""

    def __init__(self, work: Path, name: str, *args: str) -> None:
        self.name = name
        self.log = work / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aggregator", *args],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=work,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Prober:
    """Asks the replica's PROBES in turn, in a thread, timing each, until stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.times: dict[str, list[float]] = {p: [] for p in PROBES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        http = urllib3.PoolManager()
        while not self._stop.is_set():
            for path in PROBES:
                start = time.perf_counter()
                http.request("GET", self.base + path, retries=False, timeout=120)
                self.times[path].append((time.perf_counter() - start) * 1000)
            self._stop.wait(0.2)

    def stop(self) -> dict[str, tuple[float, float, int]]:
        self._stop.set()
        self._thread.join(120)
        return {k: (percentile(v, 0.5), percentile(v, 0.99), len(v)) for k, v in self.times.items()}


def write_config(work: Path, database: str, feeds: list[Feed], port: int) -> Path:
    """The deployment's config: bench/scale's (``include:`` files), on ``database``."""
    files = config_files(feeds, port, port, work)
    local = f"database: {work / 'index.sqlite'}"
    assert local in files["config.yaml"]
    files["config.yaml"] = files["config.yaml"].replace(local, f"database: {database}")
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
    return work / "config.yaml"


def wait_until(check: Any, limit: float, what: str, step: float = 0.25) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > limit:
            raise SystemExit(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(step)
    return time.perf_counter() - start


def deploy(root: Path, server: str, feeds: list[Feed], port: int, pollers: int) -> Run:
    """One run: a fresh database, the roles started, the two passes measured."""
    run = Run(pollers)
    work = root / f"run-{pollers}"
    work.mkdir()
    db = Database(server, f"scaleout_{os.getpid()}_{pollers}")
    roles: list[Role] = []
    try:
        config = str(write_config(work, db.sqlalchemy_url, feeds, port))
        subprocess.run(
            [sys.executable, "-m", "aggregator", "sync-config", "--config", config],
            check=True,
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        roles.append(Role(work, "export", "export", "--config", config))
        replica = Role(work, "serve", "serve", "--config", config, "--port", "0")
        roles.append(replica)
        wait_until(lambda: "serving on" in replica.log.read_text(errors="replace"), 120, "serve")
        found = re.search(r"serving on (http://\S+?)/?\s", replica.log.read_text())
        assert found is not None
        count = len(feeds)
        rows0, wal0 = db.activity()
        started = time.perf_counter()
        prober = Prober(found.group(1))
        roles += [Role(work, f"poller-{n}", "poller", "--config", config) for n in range(pollers)]
        peak = 0

        def cold_done() -> bool:
            nonlocal peak
            peak = max(peak, int(db.one("SELECT count(*) FROM outbox")))
            return int(db.one("SELECT count(DISTINCT source) FROM polls")) >= count

        run.cold_s = wait_until(cold_done, 3600, "the cold pass", 0.5)
        run.web = prober.stop()
        # The seconds from the last poll's commit (seen within half a second) until the
        # exporter has written every change.
        run.export_lag_s = wait_until(
            lambda: int(db.one("SELECT count(*) FROM outbox")) == 0, 3600, "the exporter", 0.05
        )
        run.outbox_peak = peak
        since = db.one("SELECT now()")
        db.conn.execute("UPDATE sources SET next_poll_at = now() WHERE removed_at IS NULL")
        warm = "SELECT count(DISTINCT source) FROM polls WHERE started_at >= %s"
        run.warm_s = wait_until(lambda: int(db.one(warm, since)) >= count, 3600, "the warm pass")
        elapsed = time.perf_counter() - started
        rows1, wal1 = db.activity()
        run.rows = rows1 - rows0
        run.wal_bytes = wal1 - wal0
        run.late_p50 = float(
            db.one("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY late) FROM claims") or 0
        )
        run.late_p99 = float(
            db.one("SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY late) FROM claims") or 0
        )
        print(
            f"{pollers} poller(s): cold {run.cold_s:.1f} s, warm {run.warm_s:.1f} s, "
            f"{run.rows / elapsed:,.0f} rows/s, {run.wal_bytes / elapsed / 1e6:.2f} MB WAL/s, "
            f"outbox peak {run.outbox_peak}, exporter lag {run.export_lag_s:.1f} s",
            flush=True,
        )
    finally:
        for role in reversed(roles):
            role.stop()
        db.drop()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=5000, help="default 5,000")
    parser.add_argument("--pollers", default="1,2,4", help="runs, comma-separated (1,2,4)")
    parser.add_argument("--server", default=SERVER, help=f"PostgreSQL (default {SERVER})")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    counts = [int(n) for n in args.pollers.split(",")]
    feeds = [f for f in plan(args.sources) if f.kind != "slow"]
    root = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    www = root / "www"
    port = free_port()
    write_www(www, feeds)
    (www / "probe.xml").write_bytes(b"<rss/>")
    nginx = start_nginx(root, port, listen=str(port), connections=16384, probe="probe.xml")
    print(
        f"workload: {len(feeds):,} feeds; cpus={os.cpu_count()}, load "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    runs: list[Run] = []
    try:
        for pollers in counts:
            runs.append(deploy(root, args.server, feeds, port, pollers))
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    base = runs[0]
    count = len(feeds)
    print(
        f"\n{'pollers':>7}  {'cold polls/s':>12}  {'ratio':>5}  {'warm polls/s':>12}  "
        f"{'ratio':>5}  {'late p50/p99 s':>15}  {'rows/s':>8}  {'WAL MB/s':>8}  "
        f"{'outbox peak':>11}  {'export lag s':>12}  {'/ p50/p99 ms':>14}"
    )
    for run in runs:
        total = run.cold_s + run.warm_s
        page = run.web.get("/", (float("nan"), float("nan"), 0))
        print(
            f"{run.pollers:>7}  {count / run.cold_s:>12.1f}  {base.cold_s / run.cold_s:>5.2f}  "
            f"{count / run.warm_s:>12.1f}  {base.warm_s / run.warm_s:>5.2f}  "
            f"{run.late_p50:>7.1f}/{run.late_p99:<7.1f}  {run.rows / total:>8.0f}  "
            f"{run.wal_bytes / total / 1e6:>8.2f}  {run.outbox_peak:>11}  "
            f"{run.export_lag_s:>12.1f}  {page[0]:>6.0f}/{page[1]:<7.0f}"
        )
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    target = out / f"scaleout-{count}.json"
    target.write_text(
        json.dumps(
            {"sources": count, "load_after": os.getloadavg(), "runs": [vars(r) for r in runs]},
            indent=1,
        )
    )
    print(f"written to {target}")


if __name__ == "__main__":
    main()
