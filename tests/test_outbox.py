"""Roles (issue 14): pollers that never touch the posts folder fill the outbox, and one
exporter turns it into the very files ``run`` writes. Real SQLite files and PostgreSQL
schemas (every test runs on both), real local feeds, real subprocesses for the commands."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    FIXED_NOW,
    MakeConfig,
    index_rows,
    item,
    open_service,
    rss,
    start_aggregator,
    wait_for,
    write_config,
)
from pytest_httpserver import HTTPServer
from test_cli import run
from test_stop import DEADLINE, HeldFeed, interrupt

from aggregator.config import load_config
from aggregator.export import Exporter
from aggregator.models import Changes
from aggregator.poll.pipeline import Poller
from aggregator.poll.scheduler import Service
from aggregator.store import Store
from aggregator.store.locks import LockHeld
from aggregator.store.outbox import DELETE, OutboxItem, exporter_lock
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects


def settings(tmp_path: Path, **more: Any) -> dict[str, Any]:
    """Settings of every config here: polled at once, feed files from ``tmp_path``."""
    return {"schedule": {"startup_spread": 0}, "fetch": {"file_roots": [str(tmp_path)]}, **more}


def feed(n: int, items: int = 3, version: int = 0) -> str:
    """Feed ``n``: dated items, two of them namesakes once case and punctuation go."""
    entries = [
        item(
            f"f{n}-{i}",
            f"Post {i} of feed {n}" if i else f"Hello, World {n}!",
            f"<p>Text {i} v{version}</p>",
            date=f"Mon, {1 + i:02d} Jan 2024 10:00:00 GMT",
        )
        for i in range(items)
    ]
    entries.append(item(f"f{n}-twin", f"hello world {n}", "<p>Twin</p>"))
    return rss("".join(entries))


def sources(urls: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"url": url, "categories": ["News", f"feed {n}"], "name": f"feed{n}", **extra}
        for n, url in enumerate(urls)
    ]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by its path relative to it."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*.md")
        if p.is_file()  # not a FIFO a test put there
    }


def sources_polled(database: str) -> int | None:
    """How many sources have a poll recorded (None: no index yet, or not made yet)."""
    try:
        return int(index_rows(database, "SELECT count(DISTINCT source) FROM polls")[0][0])
    except sa.exc.DBAPIError:  # no such table (SQLite), an undefined one (PostgreSQL)
        return None


@contextmanager
def running(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``aggregator *args`` started as a user would; killed if the test left it running."""
    process = start_aggregator(args, cwd, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as a service manager stops it: it exits 0, saying so."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, log.read_text()
    assert "stopped" in log.read_text()


@pytest.fixture
def served(httpserver: HTTPServer) -> list[str]:
    """Three feeds on the local server."""
    for n in range(3):
        httpserver.expect_request(f"/f{n}").respond_with_data(
            feed(n), content_type="application/rss+xml"
        )
    return [httpserver.url_for(f"/f{n}") for n in range(3)]


def split_configs(
    tmp_path: Path, feeds: list[dict[str, Any]], database: str, **exporting: Any
) -> tuple[Path, Path]:
    """A poller's config whose posts folder cannot exist (under a file), and the
    exporter's (with the settings ``exporting``), over one index: ``database``."""
    poller, exporter = tmp_path / "poller", tmp_path / "exporter"
    poller.mkdir()
    exporter.mkdir()
    (poller / "blocker").write_text("a file: nothing can be made under it\n")
    return (
        write_config(
            poller, feeds, **settings(tmp_path, posts_dir="blocker/posts", database=database)
        ),
        write_config(exporter, feeds, **settings(tmp_path, database=database, **exporting)),
    )


def test_a_poller_fills_the_outbox_and_export_writes_what_poll_writes(
    tmp_path: Path, served: list[str], database: str
) -> None:
    hook = 'cat "$AGGREGATOR_CHANGED_FILE" >> changed.txt'
    poller_config, exporter_config = split_configs(
        tmp_path, sources(served), database, hooks={"on_change": [hook]}
    )
    log = tmp_path / "poller.log"
    with running(["poller", "--config", str(poller_config)], tmp_path, log) as process:
        wait_for(lambda: sources_polled(database) == 3, "the poller to poll the three feeds")
        stop(process, log)
    assert index_rows(database, "SELECT sum(new), sum(failed) FROM polls") == [(12, 0)]
    assert (tmp_path / "poller" / "blocker").is_file()  # the folder was never made
    [(queued,)] = index_rows(database, "SELECT count(*) FROM outbox")
    assert queued == 12

    exported = run("export", "--once", "--config", str(exporter_config), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "12 outbox rows: 12 files written, 0 deleted, 0 not at their path" in exported.stdout
    assert index_rows(database, "SELECT count(*) FROM outbox") == [(0,)]
    changed = (tmp_path / "exporter" / "changed.txt").read_text().splitlines()
    assert len(changed) == 12  # the hooks ran once, with every file

    # The same feeds, polled by `aggregator poll` (files written directly, as `run` does),
    # into a SQLite file of its own: the same files whatever the exporter's database.
    direct = tmp_path / "direct"
    direct.mkdir()
    polled = run("poll", "--config", str(write_config(direct, sources(served))), cwd=direct)
    assert polled.returncode == 0, polled.stderr
    files = tree(tmp_path / "exporter" / "posts")
    assert len(files) == 12
    assert files == tree(direct / "posts")
    # Namesakes were told apart against the index alone, as against the folder.
    assert sum(path.rpartition("/")[2].lower().startswith("hello") for path in files) == 6


def test_a_second_exporter_is_refused(tmp_path: Path, make_config: MakeConfig) -> None:
    config = load_config(make_config([]))
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        with exporter_lock(store.engine):
            with pytest.raises(LockHeld), exporter_lock(store.engine):
                pass
            refused = run("export", "--once", cwd=tmp_path)
            assert refused.returncode == 1
            assert "another exporter is writing into" in refused.stderr
        # Released: the next one starts.
        done = run("export", "--once", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "0 outbox rows" in done.stdout
    finally:
        store.close()


def fill(config_path: Path, feeds: list[str]) -> None:
    """Poll the sources named ``feeds`` once, as a poller does (into the outbox)."""
    config = load_config(config_path)
    store = Store(config.settings.database, config.settings.posts_dir, outbox=True)
    poller = Poller(config, store, clock=lambda: FIXED_NOW, workers=1)
    try:
        outcomes = poller.poll_sources([s for s in config.sources if s.key in feeds])
        assert all(o.ok and not o.failed for o in outcomes), outcomes
    finally:
        poller.close()
        store.close()


def local_feeds(folder: Path, count: int, **extra: Any) -> list[dict[str, Any]]:
    """``count`` feed files in ``folder``/feeds, as sources."""
    (folder / "feeds").mkdir(exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / "feeds" / f"f{n}.xml"
        path.write_text(feed(n), encoding="utf-8")
        paths.append(str(path))
    return sources(paths, **extra)


def test_an_exporter_killed_mid_batch_loses_and_duplicates_nothing(
    tmp_path: Path, database: str
) -> None:
    poller_config, exporter_config = split_configs(tmp_path, local_feeds(tmp_path, 6), database)
    config = load_config(exporter_config)
    fill(poller_config, ["feed0", "feed1", "feed2"])
    # A row the exporter blocks on, between the first feeds' writes and the others':
    # deleting a file reads its entry_id first, and opening a FIFO waits for a writer.
    fifo = tmp_path / "exporter" / "posts" / "News" / "held.md"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    store = Store(config.settings.database, config.settings.posts_dir, outbox=True)
    try:
        with store.transaction() as conn:
            store.send(conn, [OutboxItem(DELETE, "News/held.md", "0" * 24)])
    finally:
        store.close()
    fill(poller_config, ["feed3", "feed4", "feed5"])
    expected = dict(index_rows(database, "SELECT path, text FROM outbox WHERE op = 'write'"))
    [(rows,)] = index_rows(database, "SELECT count(*) FROM outbox")

    process = start_aggregator(
        ["export", "--once", "--config", str(exporter_config)], tmp_path, tmp_path / "export.log"
    )
    writer = wait_for(lambda: _open_writer(fifo), "the exporter to open the FIFO")
    try:
        os.killpg(process.pid, signal.SIGKILL)  # in the middle of its batch
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        os.close(writer)
    written = tree(tmp_path / "exporter" / "posts")
    assert 0 < len(written) < len(expected)  # the batch was cut short
    assert index_rows(database, "SELECT count(*) FROM outbox") == [(rows,)]  # none taken off

    fifo.unlink()
    again = run("export", "--once", "--config", str(exporter_config), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert index_rows(database, "SELECT count(*) FROM outbox") == [(0,)]
    files = tree(tmp_path / "exporter" / "posts")
    assert files == {path: text.encode() for path, text in expected.items()}
    assert not list((tmp_path / "exporter" / "posts").rglob(".*.tmp"))


def _open_writer(fifo: Path) -> int | None:
    """A writer's descriptor of the FIFO once a reader has it open (None: none yet)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def test_a_users_file_at_an_articles_path_is_left_alone_and_shown(
    tmp_path: Path, database: str
) -> None:
    feeds = local_feeds(tmp_path, 1)
    poller_config, exporter_config = split_configs(tmp_path, feeds, database)
    config = load_config(exporter_config)
    posts = Path(config.settings.posts_dir)
    fill(poller_config, ["feed0"])
    mine = posts / "News" / "feed-0" / "Post-1-of-feed-0.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own notes\n")

    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        done = Exporter(store).drain()
        assert mine.read_text() == "my own notes\n"
        [problem] = done.problems
        assert problem.target == "News/feed-0/Post-1-of-feed-0.md"
        [entry] = [e for e in store.entries() if e["title"] == "Post 1 of feed 0"]
        moved = posts / entry["path"]
        assert moved.name == f"Post-1-of-feed-0-{entry['uid'][:8]}.md"
        assert f"entry_id: {entry['uid']}" in moved.read_text()
        assert f"the article is at {entry['path']}" in (problem.error or "")
        [recorded] = store.hook_runs()
        assert (recorded["kind"], recorded["ok"], recorded["target"]) == (
            "export",
            False,
            problem.target,
        )
        # `aggregator poll` over the same folder gives the article the same name.
        direct = tmp_path / "direct"
        direct.mkdir()
        (direct / "posts" / "News" / "feed-0").mkdir(parents=True)
        (direct / "posts" / "News" / "feed-0" / mine.name).write_text("my own notes\n")
        direct_config = write_config(direct, feeds, **settings(tmp_path))
        polled = run("poll", "--config", str(direct_config), cwd=direct)
        assert polled.returncode == 0, polled.stderr
        assert tree(direct / "posts") == tree(posts)

        # The entry changes upstream: its article follows it to its new name. A new
        # entry comes, and a folder of the user's is at its path: someone's too.
        theirs = posts / "News" / "feed-0" / "Post-3-of-feed-0.md"
        theirs.mkdir()
        Path(feeds[0]["url"]).write_text(feed(0, items=4, version=1), encoding="utf-8")
        fill(poller_config, ["feed0"])
        again = Exporter(store).drain()
        assert [p.target for p in again.problems] == ["News/feed-0/Post-3-of-feed-0.md"]
        assert mine.read_text() == "my own notes\n"
        assert "Text 1 v1" in moved.read_text()
        assert theirs.is_dir()
    finally:
        store.close()


def test_retention_deletes_go_through_the_outbox(tmp_path: Path, database: str) -> None:
    feeds = local_feeds(tmp_path, 1, keep_max=3)
    poller_config, exporter_config = split_configs(tmp_path, feeds, database)
    config = load_config(exporter_config)
    fill(poller_config, ["feed0"])
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        first = Exporter(store).drain()
        assert len(tree(Path(config.settings.posts_dir))) == 3
        assert first.changes.deleted  # pruned at once: the oldest of four
        # A newer entry comes: the oldest kept one goes.
        Path(feeds[0]["url"]).write_text(feed(0, items=4), encoding="utf-8")
        fill(poller_config, ["feed0"])
        [(path,)] = index_rows(database, "SELECT path FROM outbox WHERE op = 'delete'")
        assert (Path(config.settings.posts_dir) / path).is_file()
        second = Exporter(store).drain()
        assert second.changes.deleted == (path,)
        assert not (Path(config.settings.posts_dir) / path).exists()
        assert len(tree(Path(config.settings.posts_dir))) == 3
    finally:
        store.close()


def test_run_writes_files_right_after_each_poll_and_leaves_no_outbox(
    make_config: MakeConfig, served: list[str], services: list[Service]
) -> None:
    service = open_service(make_config(sources(served[:1])), services)
    service.start(paused=True)  # synced and scheduled; the test polls by hand
    outcome = service._run("feed0")
    assert outcome is not None and outcome.new == 4
    assert len(tree(Path(service.config.settings.posts_dir))) == 4
    with service.store.reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0


def test_export_runs_until_stopped_and_runs_the_hooks(tmp_path: Path, database: str) -> None:
    feeds = local_feeds(tmp_path, 2)
    poller_config, _ = split_configs(tmp_path, feeds, database)
    hook = 'cat "$AGGREGATOR_CHANGED_FILE" >> changed.txt'
    exporter_config = write_config(
        tmp_path / "exporter",
        feeds,
        **settings(
            tmp_path,
            database=database,
            hooks={"on_change": [hook], "debounce": 0},
        ),
    )
    log = tmp_path / "export.log"
    with running(["export", "--config", str(exporter_config)], tmp_path, log) as process:
        wait_for(lambda: "exporting into" in log.read_text(), "the exporter to start")
        fill(poller_config, ["feed0", "feed1"])
        changed = tmp_path / "exporter" / "changed.txt"
        wait_for(
            lambda: changed.exists() and len(changed.read_text().splitlines()) == 8,
            "the hook to list the eight files",
        )
        stop(process, log)
    assert len(tree(tmp_path / "exporter" / "posts")) == 8


def test_sync_config_syncs_and_counts(tmp_path: Path, make_config: MakeConfig) -> None:
    path = make_config(local_feeds(tmp_path, 2), **settings(tmp_path))
    first = run("sync-config", "--config", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "2 sources: 2 added, 0 changed, 0 removed"
    again = run("sync-config", "--config", str(path), cwd=tmp_path)
    assert again.stdout.strip() == "2 sources: 0 added, 0 changed, 0 removed"
    assert not (tmp_path / "posts").exists()  # syncing touches no article file


def test_an_entry_changed_twice_before_the_export_is_written_once_as_it_is_now(
    tmp_path: Path, database: str
) -> None:
    feeds = local_feeds(tmp_path, 1)
    poller_config, exporter_config = split_configs(tmp_path, feeds, database)
    config = load_config(exporter_config)
    fill(poller_config, ["feed0"])
    Path(feeds[0]["url"]).write_text(feed(0, version=1), encoding="utf-8")
    fill(poller_config, ["feed0"])
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        metrics = create_app(config, store).test_client().get("/metrics").get_data(as_text=True)
        assert "aggregator_outbox_rows 7\n" in metrics  # the exporter's backlog
        done = Exporter(store).drain()
        assert done.rows == 4 + 3  # four new entries, three of them updated
        assert len(done.changes.written) == 4  # each file once, with its newest text
        kinds = sorted(e.kind for e in done.changes.entries)
        assert kinds == ["new"] * 4 + ["updated"] * 3  # what the webhooks are told
        files = tree(Path(config.settings.posts_dir))
        assert sum(b"v1</p>" in text for text in files.values()) == 3
        assert not any(b"v0</p>" in text for text in files.values())
    finally:
        store.close()


@pytest.fixture
def held(httpserver: HTTPServer) -> Iterator[HeldFeed]:
    feed = HeldFeed(httpserver)
    yield feed
    feed.release.set()  # the server's only thread must be free before it stops


def test_sigterm_to_a_poller_lets_its_poll_in_flight_finish_into_the_outbox(
    held: HeldFeed, tmp_path: Path, database: str
) -> None:
    poller_config, _ = split_configs(tmp_path, [{"url": held.url, "categories": ["H"]}], database)
    log = tmp_path / "poller.log"
    with running(["poller", "--config", str(poller_config)], tmp_path, log) as process:
        assert held.arrived.wait(DEADLINE)
        interrupt(process, log)
        held.release.set()  # the poll ends after the stop began
        assert process.wait(timeout=DEADLINE) == 0, log.read_text()
    output = log.read_text()
    assert "status=ok" in output and output.rstrip().endswith("stopped")
    assert index_rows(database, "SELECT op, path FROM outbox") == [("write", "H/Held-back.md")]


def test_export_once_applies_the_rows_there_when_it_started(tmp_path: Path, database: str) -> None:
    poller_config, exporter_config = split_configs(tmp_path, local_feeds(tmp_path, 2), database)
    config = load_config(exporter_config)
    fill(poller_config, ["feed0"])
    store = Store(config.settings.database, config.settings.posts_dir)
    added: list[int] = []

    def poller_meanwhile(_changes: Changes) -> None:
        if not added:  # a poller commits while the export runs
            fill(poller_config, ["feed1"])
            added.append(1)

    try:
        done = Exporter(store, poller_meanwhile, batch=2).drain(once=True)
        assert added and done.rows == 4  # feed0's four, not feed1's
        assert index_rows(database, "SELECT count(*) FROM outbox") == [(4,)]
    finally:
        store.close()
