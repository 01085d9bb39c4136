"""Wake-ups across processes (``store/notify.py``): on PostgreSQL a commit that leaves
work for another process notifies it; looking stays the fallback. Each test here turns
the looking off (an hour between looks), so only a notification can make it pass."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import MakeConfig, item, open_service, rss, wait_for
from pytest_httpserver import HTTPServer

import aggregator.poll.scheduler
from aggregator.config import load_config
from aggregator.export import Exporter
from aggregator.poll.pipeline import Poller, utcnow
from aggregator.poll.scheduler import Service
from aggregator.store import Store, claims, jobs, notify
from aggregator.store.notify import Listener

ON_POSTGRESQL = pytest.mark.parametrize("dialect", ["postgresql"])

HOUR = 3600.0


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[Store]:
    store = Store(database, str(tmp_path / "posts"))
    yield store
    store.close()


class Waiting:
    """A listener's ``wait`` on a thread of its own; ``woken`` once it returned."""

    def __init__(self, listener: Listener, timeout: float) -> None:
        self.result: bool | None = None
        self.woken = threading.Event()
        self.thread = threading.Thread(target=self._wait, args=(listener, timeout))
        self.thread.start()

    def _wait(self, listener: Listener, timeout: float) -> None:
        self.result = listener.wait(timeout)
        self.woken.set()


@ON_POSTGRESQL
def test_a_commit_notifies_and_a_rollback_does_not(store: Store) -> None:
    listener = Listener(store.engine, [notify.WAKE])
    try:
        assert not listener.wait(0.01)  # connects and listens; nothing came

        def asked_then_rolled_back() -> None:
            with store.transaction() as conn:
                jobs.request(conn, jobs.REBUILD, utcnow(), "test")
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            asked_then_rolled_back()
        assert not listener.wait(0.5)  # a rolled-back request wakes nobody
        waiting = Waiting(listener, HOUR)
        with store.transaction() as conn:
            claims.request(conn, "a", "http://a.example/", utcnow())  # a refresh
            jobs.request(conn, jobs.REBUILD, utcnow(), "test")  # and a job: one wake
        assert waiting.woken.wait(60)
        waiting.thread.join()
        assert waiting.result is True
        assert not listener.wait(0.01)  # the burst was taken with the first
    finally:
        listener.close()


def test_without_a_server_the_listener_waits_its_time_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:9/nothing")
    listener = Listener(nowhere, [notify.OUTBOX])
    try:
        with caplog.at_level(logging.WARNING):
            assert not listener.wait(0.01)
            assert not listener.wait(0.01)
        lines = [r for r in caplog.records if "notifications not received" in r.message]
        assert len(lines) == 1  # looking goes on; said once, not at every wait
    finally:
        listener.close()
        nowhere.dispose()


@ON_POSTGRESQL
def test_the_exporter_wakes_at_a_pollers_commit(
    make_config: MakeConfig, httpserver: HTTPServer, tmp_path: Path
) -> None:
    documents = [rss(item("n1", "First")), rss(item("n1", "First") + item("n2", "Notified"))]
    httpserver.expect_ordered_request("/f").respond_with_data(
        documents[0], content_type="application/rss+xml"
    )
    httpserver.expect_ordered_request("/f").respond_with_data(
        documents[1], content_type="application/rss+xml"
    )
    config = load_config(make_config([{"url": httpserver.url_for("/f"), "categories": ["N"]}]))
    folder = Store(config.settings.database, config.settings.posts_dir)
    outbox = Store(config.settings.database, str(tmp_path / "unused"), outbox=True)
    poller = Poller(config, outbox, workers=1)
    stop = threading.Event()
    drained: list[int] = []  # ``after`` runs at the start and after each drain that wrote

    exporter = Exporter(folder, after=lambda: drained.append(1), look_every=HOUR)
    thread = threading.Thread(target=exporter.run, args=(stop,))
    try:
        [first] = poller.poll_sources(config.sources)
        assert first.new == 1  # in the outbox before the exporter starts
        thread.start()
        # Its first drain applied that row and ended (the outbox was empty), so it waits
        # now, for an hour, unless a notification ends the wait.
        wait_for(lambda: len(drained) >= 2, "the first drain")
        [second] = poller.poll_sources(config.sources)
        assert second.new == 1
        posts = Path(config.settings.posts_dir)
        wait_for(lambda: len(list(posts.rglob("*.md"))) == 2, "the notified article")
    finally:
        stop.set()
        thread.join()
        poller.close()
        outbox.close()
        folder.close()


@ON_POSTGRESQL
def test_a_refresh_in_another_process_wakes_the_claim_loop(
    make_config: MakeConfig,
    served_feeds: list[str],
    services: list[Service],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aggregator.poll.scheduler, "CLAIM_SECONDS", HOUR)  # no ticks
    path = make_config(
        [{"url": served_feeds[0], "categories": ["N"], "name": "f0"}],
        schedule={"startup_spread": 0, "interval": 86400},
    )
    service = open_service(path, services)
    service.start()  # the source is due, but no tick comes: only a notification claims
    assert (service.store.source_state("f0") or {}).get("last_polled_at") is None
    config = load_config(path)
    replica = Store(config.settings.database, str(Path(path).parent / "unused"), outbox=True)
    try:
        replica.request_poll("f0", served_feeds[0], utcnow())  # a replica's refresh
        wait_for(lambda: (service.store.source_state("f0") or {}).get("last_polled_at"), "the poll")
    finally:
        replica.close()
