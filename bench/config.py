"""bench/config: loading a config of 1k, 10k and 100k sources, against parsing its YAML.

Workload (generated, fixed seed): sources shaped like real ones — http(s) URLs spread
over hosts, two or three category levels, a name on a third of them, an interval on a
fifth, a rule on a seventh, one in eleven disabled; one in four sizes also split into
``include:`` files of 1,000 sources each. Measured in one run, alternately, the median of
the rounds:
  * floor: ``yaml.load(text, yaml.CSafeLoader)`` — PyYAML with libyaml, the usual way to
    read YAML in Python (the issue's floor), and the bare libyaml event stream, which
    nothing that reads YAML in Python can beat;
  * load: ``load_config`` (read, validate every source, all checks);
  * sync: ``Store.sync_sources`` into a fresh index (all inserted), then again after one
    source changed (one row written);
  * lookup: ``Config.source(name)``, per call, on a loaded config.
Prints each time and load / floor (aim: linear, and under ~10 s at 100,000 sources).
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from aggregator.config import load_config
from aggregator.store import Store

T = TypeVar("T")
SIZES = (1000, 10000, 100000)
PER_FILE = 1000  # sources per included file, when split


def source_lines(index: int, count: int, rng: random.Random) -> list[str]:
    host = f"feeds{rng.randrange(max(1, count // 20))}.example{index % 7}.com"
    scheme = "https" if rng.random() < 0.9 else "http"
    lines = [
        f"- url: {scheme}://{host}/{rng.choice(('rss', 'feed', 'atom.xml'))}/{index}",
        f"  categories: [{rng.choice(('News', 'Tech', 'Blogs', '财经'))}, site{index % 500}"
        + (f", feed{index}]" if index % 2 else "]"),
    ]
    if index % 3 == 0 or index % 2 == 0:  # names: given, or the last category must differ
        lines.append(f"  name: source-{index}")
    if index % 5 == 0:
        lines.append(f"  interval: {rng.choice(('30m', '2h', 3600))}")
    if index % 7 == 0:
        lines.append("  rules:\n    - block: sponsored\n      field: title")
    if index % 11 == 0:
        lines.append("  enabled: false")
    if index % 13 == 0:
        lines.append(f"  author: Author {index}")
    return lines


def write_workload(folder: Path, count: int, split: bool) -> Path:
    """A config of ``count`` sources (``split``: in included files); its path."""
    rng = random.Random(13)
    folder.mkdir(parents=True)
    head = "settings:\n  database: data/index.sqlite\n  posts_dir: posts\n"
    if not split:
        body = [f"  {line}" for i in range(count) for line in _indent(source_lines(i, count, rng))]
        path = folder / "config.yaml"
        path.write_text(head + "sources:\n" + "\n".join(body) + "\n", encoding="utf-8")
        return path
    (folder / "sources.d").mkdir()
    for start in range(0, count, PER_FILE):
        lines = [
            line
            for i in range(start, min(count, start + PER_FILE))
            for line in source_lines(i, count, rng)
        ]
        part = folder / "sources.d" / f"part{start // PER_FILE:04d}.yaml"
        part.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "config.yaml"
    path.write_text(head + "include: [sources.d/*.yaml]\n", encoding="utf-8")
    return path


def _indent(lines: list[str]) -> list[str]:
    return [line.replace("\n", "\n  ") for line in lines]


def texts(config: Path) -> list[str]:
    files = [config, *sorted((config.parent / "sources.d").glob("*.yaml"))]
    return [f.read_text(encoding="utf-8") for f in files if f.exists()]


def timed(run: Callable[..., T], *args: Any) -> tuple[float, T]:
    gc.collect()
    start = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - start, result


def floor_load(config: Path) -> None:
    for text in texts(config):
        yaml.load(text, Loader=yaml.CSafeLoader)


def floor_events(config: Path) -> None:
    for text in texts(config):
        parser = yaml.CSafeLoader(text)
        while parser.check_event():
            parser.get_event()
        parser.dispose()


def one_round(
    config_path: Path, count: int, split: bool, round_: int
) -> tuple[float, float, float, float, float, float]:
    """floor, events, load, sync, resync (seconds) and one lookup (seconds)."""
    floor, _ = timed(floor_load, config_path)
    events, _ = timed(floor_events, config_path)
    load, config = timed(load_config, config_path)
    assert len(config.sources) == count, len(config.sources)
    folder = config_path.parent
    store = Store(str(folder / f"index{round_}.sqlite"), str(folder / "posts"))
    now = datetime.now(UTC)
    sync, done = timed(store.sync_sources, config.sources, now)
    assert len(done.added) == count, len(done.added)
    text = config_path.read_text(encoding="utf-8")
    if not split:  # one source changes: one row is written
        config_path.write_text(text.replace("/rss/", "/rss2/", 1), encoding="utf-8")
    again = load_config(config_path)
    config_path.write_text(text, encoding="utf-8")
    resync, done = timed(store.sync_sources, again.sources, now)
    assert len(done.changed) == (0 if split else 1), done
    store.close()
    names = [s.key for s in config.sources]
    picks = [names[i] for i in random.Random(1).sample(range(count), 1000)]
    config.source(names[0])  # the index is built once per config
    start = time.perf_counter()
    for name in picks:
        config.source(name)
    lookup = (time.perf_counter() - start) / len(picks)
    return floor, events, load, sync, resync, lookup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="median of N (default 3)")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    if not getattr(yaml, "__with_libyaml__", False):
        sys.exit("PyYAML without libyaml: the floor would not be the usual one")
    root = Path(tempfile.mkdtemp(prefix="bench-config-"))
    try:
        print(f"python {sys.version.split()[0]}; rounds={args.rounds} (median)")
        print(
            f"{'sources':>8} {'files':>6} {'floor s':>8} {'events s':>8} {'load s':>7} "
            f"{'load/floor':>10} {'load/events':>11} {'sync s':>7} {'resync s':>8} "
            f"{'lookup us':>9}"
        )
        for count in args.sizes:
            for split in (False, True) if count >= 10000 else (False,):
                folder = root / f"{count}-{'split' if split else 'one'}"
                config_path = write_workload(folder, count, split)
                rounds = [one_round(config_path, count, split, r) for r in range(args.rounds)]
                floors, events, loads, syncs, resyncs, lookups = zip(*rounds, strict=True)
                lookup = statistics.median(lookups)
                floor, event, load = (statistics.median(x) for x in (floors, events, loads))
                files = len(texts(config_path))
                print(
                    f"{count:>8} {files:>6} {floor:>8.2f} {event:>8.2f} {load:>7.2f} "
                    f"{load / floor:>10.2f} {load / event:>11.2f} "
                    f"{statistics.median(syncs):>7.2f} {statistics.median(resyncs):>8.3f} "
                    f"{lookup * 1e6:>9.2f}"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
