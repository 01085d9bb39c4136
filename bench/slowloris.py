"""bench/slowloris: normal requests while many idle and slow connections are held open.

Runs ``aggregator serve`` on loopback with the default bounds, measures a feed request
alone (the baseline), then again while N connections are held open: half idle, half
slowloris (a request whose headers never end, one byte every few seconds, so the idle
timeout never closes them). Prints p50/p99 latency, failures and the ratio to the
baseline measured in the same run. With ``--waitress-defaults`` a second server runs
with waitress's own limits (100 connections, 120 s idle timeout), as before issue 9, to
show what the bounds change. Bounded: at most ``--requests`` requests in ``--seconds``
per measurement, each with a timeout, connections closed at the end; loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from serve import free_port

PATH = "/feeds/all.rss"


def write_config(root: Path, server: dict[str, int]) -> Path:
    lines = ["settings:", "  posts_dir: posts", "  database: index.sqlite"]
    if server:
        lines += ["  server:", *(f"    {key}: {value}" for key, value in server.items())]
    config = root / "config.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


@contextmanager
def serving(config: Path) -> Iterator[int]:
    """``aggregator serve`` on a free loopback port until the block ends."""
    port = free_port()
    argv = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            if request(port, timeout=1.0) is not None:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the server did not come up")
        yield port
    finally:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        process.kill()  # nothing once it has exited
        process.wait()


def request(port: int, timeout: float) -> float | None:
    """Seconds a GET of the feed took, or None when it failed or timed out."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", PATH)
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        conn.close()
    return time.perf_counter() - start if ok else None


def measure(port: int, args: argparse.Namespace) -> tuple[list[float], int]:
    """Latencies of up to ``--requests`` sequential requests made within ``--seconds``,
    and how many failed."""
    end = time.monotonic() + args.seconds
    times: list[float | None] = []
    while len(times) < args.requests and time.monotonic() < end:
        times.append(request(port, args.timeout))
    done = [t for t in times if t is not None]
    return done, len(times) - len(done)


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@contextmanager
def attack(port: int, connections: int, drip: float) -> Iterator[int]:
    """Hold ``connections`` open (half idle, half slowloris); yield how many opened."""
    stop = threading.Event()
    slow: list[socket.socket] = []
    with ExitStack() as stack:
        opened = 0
        for n in range(connections):
            try:
                conn = stack.enter_context(socket.create_connection(("127.0.0.1", port), 5))
            except OSError:
                continue
            opened += 1
            if n % 2:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
                slow.append(conn)

        def keep_dripping() -> None:
            while not stop.wait(drip):
                for conn in slow:
                    with suppress(OSError):
                        conn.sendall(b"a")

        dripper = threading.Thread(target=keep_dripping, daemon=True)
        dripper.start()
        try:
            yield opened
        finally:
            stop.set()
            dripper.join()


def report(label: str, times: list[float], failed: int, baseline: float | None) -> float | None:
    """Print one measurement; return its p50 (None when nothing answered)."""
    head = f"{label:<44} {len(times)} ok, {failed} failed"
    if not times:
        print(f"{head}; no request answered before its timeout", flush=True)
        return None
    p50, p99 = quantile(times, 0.5), quantile(times, 0.99)
    ratio = f", p50 {p50 / baseline:.1f}× baseline" if baseline else ""
    print(f"{head}; p50 {p50 * 1000:7.1f} ms, p99 {p99 * 1000:7.1f} ms{ratio}", flush=True)
    return p50


def run(label: str, config: Path, args: argparse.Namespace) -> None:
    with serving(config) as port:
        baseline = report(f"{label}: alone", *measure(port, args), None)
        with attack(port, args.connections, args.drip) as opened:
            times, failed = measure(port, args)
            report(f"{label}: {opened} connections held", times, failed, baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300, help="held open (300)")
    parser.add_argument("--requests", type=int, default=200, help="per measurement (200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement (20)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, s (5)")
    parser.add_argument("--drip", type=float, default=5.0, help="s between slow bytes (5)")
    parser.add_argument(
        "--waitress-defaults",
        action="store_true",
        help="also run with waitress's own limits, as before issue 9",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp:
        root = Path(tmp)
        (root / "bounded").mkdir()
        run("default bounds", write_config(root / "bounded", {}), args)
        if args.waitress_defaults:
            (root / "waitress").mkdir()
            limits = {"connection_limit": 100, "channel_timeout": 120}
            run("waitress defaults", write_config(root / "waitress", limits), args)


if __name__ == "__main__":
    main()
