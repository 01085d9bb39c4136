"""SIGKILL at random moments during polls, many times over: no partial article file
ever, and after a clean run the index and the files agree."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import MakeConfig, item, rss

FEEDS, ITEMS, KILLS = 20, 30, 12
BODY = "<p>" + "数字化转型创新基地正式揭牌。" * 40 + "</p>"


def write_feeds(folder: Path, version: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for f in range(FEEDS):
        items = "".join(
            item(
                f"f{f}-i{i}",
                f"Feed {f} item {i} v{version if i % 5 == 0 else 0}",
                BODY + f"<p>{version}</p>",
                date=f"Mon, {1 + i % 28:02d} Jan 2024 10:00:00 GMT",
            )
            for i in range(ITEMS)
        )
        path = folder / f"f{f}.xml"
        path.write_text(rss(items), encoding="utf-8")
        paths.append(path)
    return paths


def assert_whole(posts: Path) -> None:
    for file in posts.rglob("*.md"):
        text = file.read_text(encoding="utf-8")
        match = re.match(r"^---\n(.*?)\n---\n\n(.*)$", text, re.S)
        assert match is not None, f"partial file {file}"
        front = yaml.safe_load(match.group(1))
        assert front["entry_id"] and front["title"]
        assert match.group(2).endswith("</div>\n"), f"truncated body in {file}"


def test_sigkill_during_polls_never_leaves_partial_files(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    rng = random.Random(20261126)
    paths = write_feeds(tmp_path / "feeds", 0)
    config = make_config(
        [{"url": str(p), "categories": ["K", p.stem], "name": p.stem} for p in paths]
    )
    posts = tmp_path / "posts"
    command = [
        sys.executable,
        "-m",
        "aggregator",
        "poll",
        "--config",
        str(config),
        "--workers",
        "2",
    ]
    killed = 0
    for round_ in range(KILLS):
        write_feeds(tmp_path / "feeds", round_)  # every round changes some entries
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.2, 1.2))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the poller and its worker processes
            killed += 1
        process.wait(timeout=60)
        if posts.exists():
            assert_whole(posts)
    assert killed >= KILLS // 2  # most rounds really were cut short
    final = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert f"{FEEDS} sources, 0 failed" in final.stdout
    assert_whole(posts)
    database = sqlite3.connect(tmp_path / "db" / "index.sqlite")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = database.execute(
            "SELECT uid, path FROM entries WHERE pruned_at IS NULL AND dropped_by IS NULL"
        ).fetchall()
    finally:
        database.close()
    assert len(rows) == FEEDS * ITEMS  # nothing lost, nothing doubled
    on_disk = {str(p.relative_to(posts)) for p in posts.rglob("*.md")}
    assert {path for _, path in rows} == on_disk
    ids = {
        yaml.safe_load(p.read_text(encoding="utf-8").split("---")[1])["entry_id"]
        for p in posts.rglob("*.md")
    }
    assert ids == {uid for uid, _ in rows}
    titles = {
        yaml.safe_load(p.read_text(encoding="utf-8").split("---")[1])["title"]
        for p in posts.rglob("*.md")
    }
    assert f"Feed 0 item 0 v{KILLS - 1}" in titles  # updated in place to the last version
    assert "Feed 0 item 0 v0" not in titles
