"""Stopping, as a service manager or a user at a terminal stops things: real subprocesses,
real signals, a local feed that answers only when the test lets it (issue 9)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    HarnessFactory,
    MakeConfig,
    index_rows,
    item,
    rss,
    start_aggregator,
    start_run,
    wait_for,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.signals import Interrupted

DEADLINE = 60.0  # seconds to wait for each step before failing (not a speed assertion)
SIGTERM_EXIT = 128 + signal.SIGTERM  # how a shell reports a process ended by SIGTERM


class HeldFeed:
    """A feed URL that answers only once released: a poll in flight for as long as needed."""

    def __init__(self, server: HTTPServer, path: str = "/held") -> None:
        self.arrived = threading.Event()  # a request is waiting for its answer
        self.release = threading.Event()  # answer it now
        self.url = server.url_for(path)
        server.expect_request(path).respond_with_handler(self._answer)

    def _answer(self, _request: Request) -> Response:
        self.arrived.set()
        self.release.wait(DEADLINE)
        body = rss(item("held-1", "Held back", "<p>Late</p>"))
        return Response(body, headers={"Content-Type": "application/rss+xml"})


@pytest.fixture
def held(httpserver: HTTPServer) -> Iterator[HeldFeed]:
    feed = HeldFeed(httpserver)
    yield feed
    feed.release.set()  # the server's only thread must be free before it stops


def session_processes(session: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every live process in a session, read from /proc.

    A session, not the children of a pid: the pool's workers are children of the
    forkserver, and what outlives a dead parent is reparented away from it.
    """
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended meanwhile
            continue
        state, ppid, _group, sid = text[text.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state != "Z":  # a zombie has ended; it holds nothing
            found.append((int(stat.parent.name), int(ppid)))
    return found


def pool_workers(main: int) -> list[int]:
    """The pool's workers: processes of ``main``'s session (it leads one) that it did not
    start itself (they are the forkserver's children)."""
    return [pid for pid, ppid in session_processes(main) if ppid not in (main, 1)]


@contextlib.contextmanager
def reaped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever happens in the test, leave no process of its session behind."""
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)


def polled(database: str) -> dict[str, int]:
    """How many polls the store recorded per source."""
    return dict(index_rows(database, "SELECT source, count(*) FROM polls GROUP BY source"))


def run_config(make_config: MakeConfig, sources: list[dict[str, object]]) -> Path:
    return make_config(
        sources,
        workers=2,
        schedule={"startup_spread": 0},
        server={"port": 0},
        fetch={"timeout": DEADLINE},  # the held feed must not time out on its own
    )


def local_sources(tmp_path: Path, count: int) -> list[dict[str, object]]:
    """File sources with something to parse: they start the process pool."""
    folder = tmp_path / "feeds"
    folder.mkdir(exist_ok=True)
    sources: list[dict[str, object]] = []
    for n in range(count):
        path = folder / f"local{n}.xml"
        path.write_text(rss(item(f"l{n}", f"Local {n}")), encoding="utf-8")
        sources.append({"url": str(path), "categories": ["Local"], "name": f"local{n}"})
    return sources


def interrupt(process: subprocess.Popen[bytes], log: Path) -> None:
    """Send SIGTERM and wait until the process says it is shutting down."""
    process.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: shutting down" in log.read_text(), "the stop to begin")


@contextlib.contextmanager
def run_stopping(
    held: HeldFeed, make_config: MakeConfig, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`aggregator run` polling the held feed alone, stopping while that poll waits."""
    config = run_config(make_config, [{"url": held.url, "categories": ["H"], "name": "held"}])
    log = tmp_path / "stderr.txt"
    process, _base = start_run(config, log)
    with reaped(process):
        assert held.arrived.wait(DEADLINE)
        interrupt(process, log)
        yield process, log


@pytest.mark.both_dialects
def test_sigterm_while_a_poll_is_in_flight_lets_it_finish(
    held: HeldFeed, make_config: MakeConfig, tmp_path: Path, database: str
) -> None:
    with run_stopping(held, make_config, tmp_path) as (process, log):
        held.release.set()  # the poll ends after the stop began, and reschedules itself
        code = process.wait(timeout=DEADLINE)
    output = log.read_text()
    assert code == 0, output
    assert "poll source=held status=ok" in output
    assert output.rstrip().endswith("stopped")
    assert polled(database) == {"held": 1}


@pytest.mark.both_dialects
def test_a_second_signal_stops_at_once_while_a_poll_is_stuck(
    held: HeldFeed, make_config: MakeConfig, tmp_path: Path
) -> None:
    with run_stopping(held, make_config, tmp_path) as (process, log):
        process.send_signal(signal.SIGTERM)  # the feed still holds its answer back
        code = process.wait(timeout=DEADLINE)
    output = log.read_text()
    assert code == SIGTERM_EXIT, output
    assert "SIGTERM again: exiting now" in output


def start_polling(
    held: HeldFeed, make_config: MakeConfig, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """`aggregator poll` of three local sources and the held feed, once the held feed's
    request has arrived and the pool's workers run: a poll in flight, and processes."""
    sources: list[dict[str, object]] = [
        *local_sources(tmp_path, 3),
        {"url": held.url, "categories": ["H"], "name": "held"},
    ]
    log = tmp_path / "stderr.txt"
    config = run_config(make_config, sources)
    process = start_aggregator(["poll", "--config", str(config)], tmp_path, log)
    try:
        assert held.arrived.wait(DEADLINE)
        wait_for(lambda: pool_workers(process.pid), "the pool's workers")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
        raise
    return process, log


@pytest.mark.both_dialects
def test_sigterm_to_poll_records_what_ended_and_leaves_no_process(
    held: HeldFeed, make_config: MakeConfig, tmp_path: Path, database: str
) -> None:
    process, log = start_polling(held, make_config, tmp_path)
    with reaped(process):
        interrupt(process, log)
        held.release.set()
        code = process.wait(timeout=DEADLINE)
        wait_for(lambda: not session_processes(process.pid), "every process it started to end")
    assert code == SIGTERM_EXIT, log.read_text()
    assert polled(database) == {"local0": 1, "local1": 1, "local2": 1, "held": 1}


@pytest.mark.both_dialects
def test_sigkill_to_run_leaves_no_process(make_config: MakeConfig, tmp_path: Path) -> None:
    config = run_config(make_config, local_sources(tmp_path, 3))
    process, _base = start_run(config, tmp_path / "stderr.txt")
    with reaped(process):
        wait_for(lambda: pool_workers(process.pid), "the pool's workers")
        process.kill()
        process.wait(timeout=DEADLINE)
        wait_for(lambda: not session_processes(process.pid), "every process it started to end")


def test_a_signal_during_start_up_ends_it_like_any_other(tmp_path: Path) -> None:
    """No dialect: the stop lands while the config is read, before any index is opened."""
    config = tmp_path / "config.yaml"
    os.mkfifo(config)  # start-up blocks reading it until the test writes: a fixed moment
    log = tmp_path / "stderr.txt"
    process = start_aggregator(["run", "--config", str(config)], tmp_path, log)
    with reaped(process):
        # Opening the writing end without blocking works once the reader has it open.
        writer = wait_for(lambda: open_writer(config), "run to open its config")
        try:
            interrupt(process, log)
            code = process.wait(timeout=DEADLINE)
        finally:
            os.close(writer)
    assert code == SIGTERM_EXIT, log.read_text()
    assert "Traceback" not in log.read_text()


def open_writer(fifo: Path) -> int | None:
    """The writing end of a FIFO, or None while nothing reads it."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return None


@pytest.mark.both_dialects
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_sent_to_the_whole_group_lets_polls_in_flight_finish(
    signum: signal.Signals,
    held: HeldFeed,
    make_config: MakeConfig,
    tmp_path: Path,
    database: str,
) -> None:
    # A terminal's Ctrl-C (and a service manager's stop) signals every process of the
    # group, the pool's workers too: they must leave the stopping to the main process.
    process, log = start_polling(held, make_config, tmp_path)
    with reaped(process):
        os.killpg(process.pid, signum)
        wait_for(lambda: f"{signum.name}: shutting down" in log.read_text(), "the stop to begin")
        held.release.set()
        code = process.wait(timeout=DEADLINE)
    output = log.read_text()
    assert code == 128 + signum, output
    assert "Traceback" not in output
    # The held entry was parsed by the pool after the signal: the pool was not broken.
    held_entries = index_rows(database, "SELECT count(*) FROM entries WHERE source = 'held'")
    assert held_entries == [(1,)], output
    errors = index_rows(database, "SELECT error FROM polls WHERE source = 'held'")
    assert all(error is None for (error,) in errors), errors


@pytest.mark.both_dialects
def test_a_stop_between_two_submits_records_the_polls_already_started(
    make_config: MakeConfig,
    harness: HarnessFactory,
    tmp_path: Path,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The signal's moment, fixed: it lands as the fourth poll is being handed out, once
    # the first three have started.
    submit = ThreadPoolExecutor.submit
    handed: list[str] = []
    started: list[str] = []
    three_started = threading.Event()

    def submit_then_stop(
        self: ThreadPoolExecutor, fn: Callable[..., object], /, *args: object
    ) -> Future[object]:
        if getattr(fn, "__name__", "") != "_fetch_guarded":  # the store's file writers submit too
            return submit(self, fn, *args)
        if len(handed) == 3:
            assert three_started.wait(DEADLINE)
            raise Interrupted(signal.SIGTERM)
        key = str(getattr(args[0], "key", ""))
        handed.append(key)

        def run(*args: object) -> object:
            started.append(key)
            if len(started) == 3:
                three_started.set()
            return fn(*args)

        return submit(self, run, *args)

    h = harness(make_config(local_sources(tmp_path, 5)))
    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit_then_stop)
    with pytest.raises(Interrupted):
        h.poll()
    assert sorted(started) == sorted(handed) == ["local0", "local1", "local2"]
    assert polled(database) == dict.fromkeys(handed, 1)
