"""`aggregator run` as a user starts it: a subprocess, a local feed server, SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
from conftest import MakeConfig, item, rss, start_run, wait_for
from pytest_httpserver import HTTPServer

from aggregator.store import Store

pytestmark = pytest.mark.both_dialects

DEADLINE = 60.0  # seconds to wait for each step before failing (not a speed assertion)


def test_run_polls_serves_and_stops_cleanly(
    httpserver: HTTPServer, make_config: MakeConfig, tmp_path: Path, database: str
) -> None:
    httpserver.expect_request("/second").respond_with_data(
        rss(item("x1", "Added later")), content_type="application/rss+xml"
    )
    httpserver.expect_request("/feed").respond_with_data(
        rss(item("g1", "服务里的文章", "<p>正文</p>") + item("g2", "Second", "<p>Two</p>")),
        content_type="application/rss+xml",
    )
    config = make_config(
        [{"url": httpserver.url_for("/feed"), "categories": ["新闻", "本地", "测试"]}],
        schedule={"startup_spread": 0, "interval": 3600},
        server={"port": 0},
    )
    log = tmp_path / "stderr.txt"
    process, base = start_run(config, log, {"PYTHONWARNINGS": "error"})
    try:
        assert base.startswith("http://127.0.0.1:")
        posts = tmp_path / "posts"
        files = wait_for(lambda: sorted(posts.rglob("*.md")) if posts.exists() else [], "articles")
        wait_for(lambda: len(list(posts.rglob("*.md"))) == 2, "both articles")
        assert files[0].parent == posts / "新闻" / "本地" / "测试"
        page = wait_for(
            lambda: (
                (t := urllib.request.urlopen(base, timeout=10).read().decode())
                and "服务里的文章" in t
                and t
            ),
            "the article in the web app",
        )
        assert "Second" in page
        health = urllib.request.urlopen(base + "healthz", timeout=10).read().decode()
        assert '"status":"ok"' in health
        assert "poll source=测试 status=ok http=200" in log.read_text()
        # SIGHUP reloads the config: a source added to the file is polled, no restart.
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace(
                "sources:\n",
                f"sources:\n- url: {httpserver.url_for('/second')}\n  categories: [Added]\n",
                1,
            ),
            encoding="utf-8",
        )
        process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (posts / "Added").is_dir() and list((posts / "Added").glob("*.md")),
            "the added source",
        )
        assert "config reloaded: 2 sources (1 added or changed, 0 removed)" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=DEADLINE)
    output = log.read_text()
    assert code == 0, output
    assert "SIGTERM: shutting down" in output
    assert output.rstrip().endswith("stopped")
    assert "Traceback" not in output
    store = Store(database, str(tmp_path / "posts"))
    try:
        assert store.count_entries() == 3
        if store.dialect == "sqlite":
            with store.reading() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        store.close()
    assert not list((tmp_path / "posts").rglob(".*.tmp"))
