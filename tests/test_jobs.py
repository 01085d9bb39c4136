"""Jobs (``store/jobs.py``): a rebuild or a prune asked for from any process is a row,
run one at a time across processes under the jobs lock, and recorded where every
dashboard reads it; a runner that dies leaves a row the next one marks failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import EXAMPLES, MakeConfig, wait_for, write_config
from pg import Databases
from test_outbox import local_feeds, running, stop, tree

from aggregator.cli import cli
from aggregator.config import load_config
from aggregator.errors import StoreError
from aggregator.poll.pipeline import Poller
from aggregator.poll.scheduler import JobRunner
from aggregator.store import Store, jobs
from aggregator.store.locks import LockHeld
from aggregator.store.outbox import exporter_lock
from aggregator.store.schema import jobs_table

pytestmark = pytest.mark.both_dialects

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[Store]:
    store = Store(database, str(tmp_path / "posts"))
    yield store
    store.close()


def test_a_job_is_asked_for_once_until_it_has_ended(store: Store) -> None:
    with store.transaction() as conn:
        assert jobs.request(conn, jobs.REBUILD, NOW, "dashboard")
        assert not jobs.request(conn, jobs.REBUILD, NOW, "dashboard")  # waiting
        assert jobs.request(conn, jobs.PRUNE, NOW, "dashboard")  # another kind
        with pytest.raises(ValueError, match="no job 'vacuum'"):
            jobs.request(conn, "vacuum", NOW, "dashboard")
    with jobs.lock(store.engine), store.transaction() as conn:
        first = jobs.take(conn, NOW, "here:1")
        assert first is not None and (first.kind, first.state) == (jobs.REBUILD, jobs.RUNNING)
        assert not jobs.request(conn, jobs.REBUILD, NOW, "dashboard")  # running
        jobs.finish(conn, first.id, NOW + timedelta(minutes=1), {"sources": 2, "updated": 1})
        assert jobs.request(conn, jobs.REBUILD, NOW, "dashboard")  # ended: asked again
        second = jobs.take(conn, NOW, "here:1")
        assert second is not None and second.kind == jobs.PRUNE  # oldest first
    with store.reading() as conn:
        status = jobs.rebuild_status(jobs.latest(conn, jobs.REBUILD))
    assert status.waiting and not status.running


def test_the_index_keeps_one_waiting_row_of_a_kind(store: Store) -> None:
    """Two replicas that both found none waiting and insert at once: the unique index
    over waiting rows turns the second insert away (``request`` ignores it)."""
    row = {"kind": jobs.REBUILD, "state": jobs.PENDING, "requested_at": NOW, "requested_by": "a"}
    with store.transaction() as conn:
        conn.execute(sa.insert(jobs_table).values(row))
    with pytest.raises(StoreError), store.transaction() as conn:
        conn.execute(sa.insert(jobs_table).values(row))
    with store.transaction() as conn:  # a done one and a running one may sit beside it
        conn.execute(sa.insert(jobs_table).values({**row, "state": jobs.DONE}))
        conn.execute(sa.insert(jobs_table).values({**row, "state": jobs.RUNNING}))


def test_a_runner_that_dies_leaves_a_row_the_next_one_marks_failed(
    store: Store, database: str, tmp_path: Path
) -> None:
    with store.transaction() as conn:
        assert jobs.request(conn, jobs.REBUILD, NOW, "dashboard")
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from datetime import UTC, datetime\n"
            "from aggregator.store import Store, jobs\n"
            "store = Store(sys.argv[1], sys.argv[2])\n"
            "with jobs.lock(store.engine):\n"
            "    with store.transaction() as conn:\n"
            "        job = jobs.take(conn, datetime.now(UTC), 'victim:1')\n"
            "    print(job.kind, flush=True)\n"
            "    time.sleep(600)\n",
            database,
            str(tmp_path / "posts"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == jobs.REBUILD
            with pytest.raises(LockHeld), jobs.lock(store.engine):
                pass  # the victim runs its rebuild
        finally:
            os.kill(child.pid, signal.SIGKILL)  # `with` then waits for it
    # The lock went with the process (PostgreSQL sees the closed connection, the kernel
    # drops the flock). Until a runner looks, the row says "running": no new request.
    requests = jobs.Requests(store, lambda: NOW)
    assert requests.rebuild_status.running
    assert not requests.rebuild()

    def no_poller() -> Poller:
        raise AssertionError("no job to run: only the orphan to mark")

    # Any process with pollers looks every second: it takes the lock and marks the row.
    runner = JobRunner(store, no_poller)

    def marked() -> bool:
        runner.look()
        assert runner.wait(60)
        return not requests.rebuild_status.running  # PostgreSQL ends the session soon

    wait_for(marked, "a runner to mark the orphan")
    with store.reading() as conn:
        job = jobs.latest(conn, jobs.REBUILD)
    assert job is not None and (job.state, job.runner) == (jobs.FAILED, "victim:1")
    assert jobs.rebuild_status(job).error == jobs.ORPHANED
    assert requests.rebuild()  # and the button works again


def test_the_rebuild_command_answers_a_waiting_request_and_waits_its_turn(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    feed = str(EXAMPLES / "sina-finance-china.rss.xml")
    path = make_config([{"name": "Sina", "url": feed, "categories": ["金融", "新浪财经"]}])
    runner = CliRunner()
    assert runner.invoke(cli, ["poll", "--config", str(path)]).exit_code == 0
    config = load_config(path)
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        with store.transaction() as conn:
            assert jobs.request(conn, jobs.REBUILD, NOW, "dashboard")
        with jobs.lock(store.engine):  # a dashboard rebuild runs in another process
            refused = runner.invoke(cli, ["rebuild", "--workers", "1", "--config", str(path)])
        assert refused.exit_code == 1
        assert "another process is running a rebuild or a prune" in refused.output
        with store.reading() as conn:
            waiting = jobs.latest(conn, jobs.REBUILD)
        assert waiting is not None and waiting.state == jobs.PENDING  # still waiting

        done = runner.invoke(cli, ["rebuild", "--workers", "1", "--config", str(path)])
        assert done.exit_code == 0, done.output
        assert runner.invoke(cli, ["prune", "--config", str(path)]).exit_code == 0
        with store.reading() as conn:
            rebuild = jobs.latest(conn, jobs.REBUILD)
            prune = jobs.latest(conn, jobs.PRUNE)
    finally:
        store.close()
    # The command's run is the waiting row's answer: the dashboard shows it as done.
    assert rebuild is not None and rebuild.id == waiting.id
    assert (rebuild.state, rebuild.requested_by) == (jobs.DONE, "dashboard")
    assert rebuild.runner == jobs.runner_name()  # this process ran the command
    assert dict(rebuild.result) == {"sources": 1, "updated": 0, "failed": []}
    assert prune is not None and (prune.state, prune.requested_by) == (jobs.DONE, "command")
    assert dict(prune.result) == {"sources": 1, "pruned": 0}


def test_a_rebuild_asked_for_on_a_replica_is_run_by_a_poller_and_written_by_the_exporter(
    tmp_path: Path, database: str
) -> None:
    """The split roles, as separate processes: nothing in the replica's process polls
    or writes files; `aggregator poller` runs the rebuild into the outbox, and
    `aggregator export` writes the files back."""
    feeds = local_feeds(tmp_path, 2)
    poller_dir, exporter_dir = tmp_path / "poller", tmp_path / "exporter"
    poller_dir.mkdir()
    exporter_dir.mkdir()
    (poller_dir / "blocker").write_text("a file: nothing can be made under it\n")
    common = {"schedule": {"startup_spread": 0}, "fetch": {"file_roots": [str(tmp_path)]}}
    poller_config = write_config(
        poller_dir, feeds, posts_dir="blocker/posts", database=database, **common
    )
    exporter_config = write_config(exporter_dir, feeds, database=database, **common)
    posts = exporter_dir / "posts"
    poller_log, export_log = tmp_path / "poller.log", tmp_path / "export.log"
    with (
        running(["poller", "--config", str(poller_config)], tmp_path, poller_log) as poller,
        running(["export", "--config", str(exporter_config)], tmp_path, export_log) as export,
    ):
        wait_for(lambda: len(tree(posts)) == 8, "the two feeds' eight articles")
        lost = sorted(posts.rglob("*.md"))[0]
        text = lost.read_text(encoding="utf-8")
        lost.unlink()  # gone by hand: only a rebuild writes it again

        replica = Store(database, str(tmp_path / "replica-has-no-posts"), outbox=True)
        try:
            assert jobs.Requests(replica, lambda: datetime.now(UTC)).rebuild()
            wait_for(lambda: lost.exists(), "the rebuild's file to be exported")

            def ended() -> bool:
                return jobs.rebuild_status(latest_rebuild(replica)).finished_at is not None

            wait_for(ended, "the rebuild's row to say it ended")
            job = latest_rebuild(replica)
        finally:
            replica.close()
        stop(poller, poller_log)
        stop(export, export_log)
    assert lost.read_text(encoding="utf-8") == text
    assert job is not None and job.state == jobs.DONE
    assert job.runner is not None and job.runner.endswith(f":{poller.pid}")
    # Without the folder the poller cannot tell which files differ: every article goes
    # to the outbox (`run` counts only the one it wrote back).
    assert dict(job.result) == {"sources": 2, "updated": 8, "failed": []}
    assert not (poller_dir / "blocker").is_dir()  # the poller never made a folder


def latest_rebuild(store: Store) -> jobs.Job | None:
    with store.reading() as conn:
        return jobs.latest(conn, jobs.REBUILD)


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_two_deployments_in_two_schemas_of_one_database_lock_apart(
    store: Store, postgres: Databases, tmp_path: Path
) -> None:
    """PostgreSQL's advisory locks are the database's: the key names the schema too."""
    with postgres.schema() as url:
        other = Store(url, str(tmp_path / "other-posts"))
        try:
            with jobs.lock(store.engine), exporter_lock(store.engine):
                with jobs.lock(other.engine), exporter_lock(other.engine):
                    pass  # another deployment's locks are its own
                with pytest.raises(LockHeld), jobs.lock(store.engine):
                    pass
                with pytest.raises(LockHeld), exporter_lock(store.engine):
                    pass
        finally:
            other.close()
