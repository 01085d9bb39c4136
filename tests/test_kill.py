"""SIGKILL in the middle of polls, many times over: no partial article file ever, and
after a clean run the index and the files agree.

The feeds come from a local HTTP server that holds the k-th request of a round (one
request at a time per host, so the first k - 1 were answered and their sources are being
parsed and written): the kill lands while a poll is provably in flight, at a moment the
test chose, not after a sleep that may fall before start-up has even finished.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import Gate, MakeConfig, index_rows, item, rss
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.store.dialects import database_url

FEEDS, ITEMS = 20, 30
# Per round, the request held when the poll is killed: early, late (every other source
# answered, most of them being parsed and written) and in between.
KILL_AT = (3, FEEDS, 9, 15, 6, FEEDS)
BODY = "<p>" + "数字化转型创新基地正式揭牌。" * 40 + "</p>"


def feed_documents(version: int) -> list[bytes]:
    """The feeds of one round: every body changes, and every fifth title."""
    documents = []
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
        documents.append(rss(items).encode())
    return documents


def arrived(count: int) -> Callable[[Gate], bool]:
    """The gate has seen ``count`` requests (or more: then the test fails, not hangs)."""
    return lambda gate: gate.arrived >= count


def assert_whole(posts: Path) -> None:
    for file in posts.rglob("*.md"):
        text = file.read_text(encoding="utf-8")
        match = re.match(r"^---\n(.*?)\n---\n\n(.*)$", text, re.S)
        assert match is not None, f"partial file {file}"
        front = yaml.safe_load(match.group(1))
        assert front["entry_id"] and front["title"]
        assert match.group(2).endswith("</div>\n"), f"truncated body in {file}"


def expire_leases(database: str) -> int:
    """End every lease now (what their end time does); how many there were."""
    engine = sa.create_engine(database_url(database), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            return conn.execute(
                sa.text(
                    "UPDATE sources SET lease_until = NULL, lease_token = NULL "
                    "WHERE lease_token IS NOT NULL"
                )
            ).rowcount
    finally:
        engine.dispose()


@pytest.mark.both_dialects
def test_sigkill_during_polls_never_leaves_partial_files(
    make_config: MakeConfig,
    tmp_path: Path,
    threaded_httpserver: HTTPServer,
    dialect: str,
    database: str,
) -> None:
    # On both databases (slow as it is): what a kill leaves differs, a SQLite file's
    # hot journal against a PostgreSQL server's aborted transactions and their leases.
    documents = feed_documents(0)
    gate = Gate()

    def serve(f: int) -> Callable[[Request], Response]:
        """Feed ``f`` as it is in the current round."""
        headers = {"Content-Type": "application/rss+xml"}
        return lambda _request: Response(documents[f], headers=headers)

    for f in range(FEEDS):
        threaded_httpserver.expect_request(f"/f{f}.xml").respond_with_handler(gate.held(serve(f)))
    config = make_config(
        [
            {
                "url": threaded_httpserver.url_for(f"/f{f}.xml"),
                "categories": ["K", f"f{f}"],
                "name": f"f{f}",
            }
            for f in range(FEEDS)
        ],
        schedule={"per_host": 1},  # requests one by one: the held one is the only one
    )
    posts = tmp_path / "posts"
    command = [sys.executable, "-m", "aggregator", "poll", "--config", str(config)]
    command += ["--workers", "2"]
    try:
        for round_, kill_at in enumerate(KILL_AT):
            documents[:] = feed_documents(round_)  # every round changes every entry
            gate.reset(passes=kill_at - 1)
            process = subprocess.Popen(
                command,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            gate.wait(arrived(kill_at), f"request {kill_at} of the poll")
            assert gate.arrived == kill_at  # one request at a time: the others were answered
            assert process.poll() is None  # it waits for the held answer
            os.killpg(process.pid, signal.SIGKILL)  # the poller and its worker processes
            assert process.wait(timeout=60) == -signal.SIGKILL
            gate.open()
            gate.wait(lambda g: g.active == 0, "the held request to end")
            if posts.exists():
                assert_whole(posts)
            # The killed pass's leases hold its sources until they end (minutes): a poll
            # run at once skips them. End them, as time would.
            assert expire_leases(database) > 0
        assert posts.exists()  # the kills did land after some files were written
    finally:
        gate.open()
    final = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert f"{FEEDS} sources, 0 failed" in final.stdout
    assert_whole(posts)
    if dialect == "sqlite":  # a server's storage is not ours to check
        assert index_rows(database, "PRAGMA integrity_check") == [("ok",)]
    rows = index_rows(
        database, "SELECT uid, path FROM entries WHERE pruned_at IS NULL AND dropped_by IS NULL"
    )
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
    last = len(KILL_AT) - 1
    assert f"Feed 0 item 0 v{last}" in titles  # updated in place to the last version
    assert "Feed 0 item 0 v0" not in titles
