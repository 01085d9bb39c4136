"""The benchmarks' generated configurations stay valid as the config grows rules."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

from aggregator.config import load_config

sys.path.insert(0, str(ROOT / "bench"))
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
