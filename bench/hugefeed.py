"""bench/hugefeed: a 100,000-entry feed, polled with the default cap of 500 entries.

The functional test (tests/test_hostile.py::test_huge_feed_is_capped_at_max_entries)
checks the cap on 2,000 entries; this is the big case it stands for. Each phase runs in a
fresh interpreter, so its peak resident memory is its own (read with ``os.wait4``):
  * baseline: ``feedparser.parse(bytes)`` of the document, defaults;
  * poll: ``Poller.poll_sources`` of the same file into a fresh store (parse once, convert and
    write only the first ``fetch.max_entries``, report the rest as a warning).
Prints both and the ratios poll/parse for time and peak memory. Bounded: one document,
``--rounds`` rounds, each phase killed after ``--timeout`` seconds.
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
from pathlib import Path

CAP = 500  # settings.fetch.max_entries, its default


def feed_document(items: int) -> bytes:
    """The document the functional test serves, with ``items`` entries."""
    body = "".join(f"<item><title>t{n}</title><guid>g{n}</guid></item>" for n in range(items))
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>http://x.example/</link><description>d</description>{body}</channel></rss>"
    ).encode()


def phase_parse(document: Path, items: int) -> float:
    import feedparser

    body = document.read_bytes()
    start = time.perf_counter()
    parsed = feedparser.parse(body)
    elapsed = time.perf_counter() - start
    assert len(parsed.entries) == items, len(parsed.entries)
    return elapsed


def phase_poll(document: Path, items: int) -> float:
    from aggregator.config import load_config
    from aggregator.poll.pipeline import Poller
    from aggregator.store import Store

    workdir = document.parent / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    config_path = workdir / "config.yaml"
    config_path.write_text(
        "settings:\n"
        f"  posts_dir: {workdir / 'posts'}\n"
        f"  database: {workdir / 'index.sqlite'}\n"
        f"  fetch: {{file_roots: [{document.parent}]}}\n"
        f"sources:\n  - url: {document}\n    categories: [Huge]\n",
        encoding="utf-8",
    )
    config = load_config(config_path)
    assert config.settings.fetch.max_entries == CAP
    store = Store(config.settings.database, config.settings.posts_dir)
    poller = Poller(config, store, workers=1)
    start = time.perf_counter()
    [outcome] = poller.poll_sources(config.sources)
    elapsed = time.perf_counter() - start
    poller.close()
    store.close()
    assert outcome.ok and outcome.new == CAP, outcome
    beyond = f"{items - CAP} entries beyond the first {CAP} ignored"
    assert any(beyond in w for w in outcome.warnings), outcome.warnings
    assert sum(1 for _ in (workdir / "posts").rglob("*.md")) == CAP
    return elapsed


PHASES = {"parse": phase_parse, "poll": phase_poll}


def run_phase(name: str, document: Path, items: int, timeout: float) -> tuple[float, float]:
    """Run one phase in a child interpreter: its seconds and peak resident MB."""
    command = [sys.executable, __file__, "--phase", name, "--document", str(document)]
    command += ["--items", str(items)]
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, stdout=out)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise SystemExit(f"phase {name} took over {timeout:.0f} s: killed")
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"phase {name} failed (exit {child.returncode})")
        out.seek(0)
        seconds = float(json.loads(out.read())["seconds"])
    # ru_maxrss is in KiB on Linux.
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="entries (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--timeout", type=float, default=300, help="per phase, seconds")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--document", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:  # a child: one measurement, as JSON on standard output
        seconds = PHASES[args.phase](args.document, args.items)
        print(json.dumps({"seconds": seconds}))
        return
    if args.items <= CAP:
        parser.error(f"--items must be over the cap ({CAP})")

    root = Path(tempfile.mkdtemp(prefix="bench-hugefeed-"))
    try:
        document = root / "huge.xml"
        document.write_bytes(feed_document(args.items))
        size = document.stat().st_size / 1e6
        print(f"workload: one feed of {args.items} entries ({size:.1f} MB), cap {CAP}")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in PHASES}
        for round_ in range(1, args.rounds + 1):
            for name in PHASES:
                results[name].append(run_phase(name, document, args.items, args.timeout))
            parse_s, parse_mb = results["parse"][-1]
            poll_s, poll_mb = results["poll"][-1]
            print(
                f"round {round_}: feedparser.parse {parse_s:.2f} s {parse_mb:.0f} MB, "
                f"poll {poll_s:.2f} s {poll_mb:.0f} MB"
            )
        parse_s = min(s for s, _ in results["parse"])
        poll_s = min(s for s, _ in results["poll"])
        parse_mb = min(mb for _, mb in results["parse"])
        poll_mb = min(mb for _, mb in results["poll"])
        print(f"baseline feedparser.parse (defaults): {parse_s:.2f} s, peak {parse_mb:.0f} MB")
        print(
            f"full poll (parse, convert {CAP}, write, index): {poll_s:.2f} s, peak {poll_mb:.0f} MB"
        )
        print(
            f"ratio poll/parse: time {poll_s / parse_s:.2f}, peak memory {poll_mb / parse_mb:.2f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
