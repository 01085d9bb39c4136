"""The benchmarks' generated configurations and phases stay valid as the code moves."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

from aggregator.config import load_config

sys.path.insert(0, str(ROOT / "bench"))
from hugefeed import CAP, phase_poll
from hugefeed import feed_document as huge_document
from slowloris import write_config
from workload import config_text, feed_document, write_feeds


def test_ingest_workload_config_is_valid(tmp_path: Path) -> None:
    paths = write_feeds(tmp_path / "feeds", feeds=3)
    config_path = tmp_path / "work" / "config.yaml"
    config_path.parent.mkdir()
    config_path.write_text(config_text(paths, config_path.parent), encoding="utf-8")
    config = load_config(config_path)
    assert len(config.sources) == 3
    assert feed_document(0).count(b"<item>") == 30


def test_slowloris_configs_are_valid(tmp_path: Path) -> None:
    bounded = load_config(write_config(tmp_path, {}))
    assert bounded.settings.server.connection_limit > 150  # the bench holds 300
    waitress = load_config(
        write_config(tmp_path, {"connection_limit": 100, "channel_timeout": 120})
    )
    assert waitress.settings.server.connection_limit == 100


def test_hugefeed_poll_phase_on_a_small_document(tmp_path: Path) -> None:
    """The bench's own assertions (cap, warning, files) hold on a document just over the cap."""
    document = tmp_path / "huge.xml"
    document.write_bytes(huge_document(CAP + 100))
    assert phase_poll(document, CAP + 100) > 0


def test_overview_bench_config_and_index(tmp_path: Path) -> None:
    """bench/overview's generated config loads and its index fills (a state mix)."""
    import overview  # bench/overview.py

    from aggregator.store import Store

    config = load_config(overview.write_config(tmp_path, 100))
    assert len(config.sources) == 100 and not config.sources[99].enabled
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        overview.fill_index(store, 100)
        states = store.source_states()
        assert len(states) == 90  # one in ten never polled
        assert {s["status"] for s in states.values()} == {"ok", "erroring", "paused", "gone"}
        assert store.count_entries() == 100
    finally:
        store.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_config(overview.write_config(empty, 0)).sources == ()


def test_scale_workload_is_fixed_and_mixed(tmp_path: Path) -> None:
    """bench/scale's feeds are the same every run, hold the promised mix, and its
    generated config of included files loads with one source per feed, on many hosts."""
    import feedparser
    import scale  # bench/scale.py

    feeds = scale.plan(3000)
    assert feeds == scale.plan(3000)
    assert [f.items for f in scale.plan(1000)] == [f.items for f in feeds[:1000]]
    kinds = {k: sum(f.kind == k for f in feeds) for k in ("static", "plain", "slow")}
    assert kinds["slow"] and kinds["plain"] and sum(f.changes for f in feeds)
    assert not any(f.changes for f in feeds if f.kind != "static")  # a 304 first, then 200
    assert {f.items for f in feeds} >= {3, 10, 30, 150}
    slow_hosts = {f.host for f in feeds if f.kind == "slow"}
    assert all(f.kind == "slow" for f in feeds if f.host in slow_hosts)  # whole hosts
    assert len({scale.host_address(h) for h in range(70000)}) == 70000
    changed = next(f for f in feeds if f.changes)
    before, after = (feedparser.parse(scale.document(changed, v)).entries for v in (0, 1))
    assert len(after) == len(before) + scale.NEW_ITEMS == changed.items + scale.NEW_ITEMS
    assert after[scale.NEW_ITEMS :] == before  # new items on top, the old ones unchanged

    work = tmp_path / "work"
    for name, text in scale.config_files(feeds[:1500], 8080, 8081, work).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
    config = load_config(work / "config.yaml")
    assert [s.key for s in config.sources] == [f.name for f in feeds[:1500]]
    assert config.settings.schedule.startup_spread == 0
    slow = next(f for f in feeds if f.kind == "slow")
    assert config.source(slow.name).url.endswith(f":8081/{slow.path}")  # type: ignore[union-attr]
    assert scale.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert scale.percentile([3.0, 1.0, 2.0, 4.0], 0.99) == 4.0
