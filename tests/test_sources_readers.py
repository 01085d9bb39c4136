"""Issue 13: every reader takes its sources from the index by key, not from the config it
loaded. A second Store on the same SQLite file, syncing another config, stands for
another process (issue 14's pollers and web replicas); feeds come from a real local
HTTP server that logs its requests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FIXED_NOW, item, open_service, rss, stored_bytes, wait_for, write_config
from pytest_httpserver import HTTPServer
from test_dashboard import SECRET
from test_service import Clock

from aggregator.cli import cli
from aggregator.config import Config, load_config
from aggregator.models import SourceOutcome
from aggregator.poll.pipeline import utcnow
from aggregator.poll.scheduler import Service
from aggregator.store import Store, claims
from aggregator.web import ADMIN_SECRET_ENV, create_app

pytestmark = pytest.mark.both_dialects


def serve_feed(httpserver: HTTPServer, name: str) -> str:
    httpserver.expect_request(f"/{name}").respond_with_data(
        rss(item(f"g-{name}", f"Post of {name}")), content_type="application/rss+xml"
    )
    return httpserver.url_for(f"/{name}")


def fetched(httpserver: HTTPServer, name: str) -> list[dict[str, str]]:
    """The headers of each request the server saw for /name."""
    return [dict(r.headers) for r, _ in httpserver.log if r.path == f"/{name}"]


def source(url: str, name: str, **more: Any) -> dict[str, Any]:
    return {"url": url, "categories": ["A", name], "name": name, **more}


@dataclass(frozen=True)
class Shared:
    """What every process of a test shares: the index and the posts folder's parent."""

    folder: Path
    database: str


@pytest.fixture
def shared(tmp_path: Path, database: str) -> Shared:
    return Shared(tmp_path, database)


def config_at(folder: Path, sources: list[dict[str, Any]], shared: Shared) -> Path:
    """A config in ``folder`` over the index and posts of ``shared`` (another process's
    config file, same database)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder,
        sources,
        database=shared.database,
        posts_dir=str(shared.folder / "posts"),
        schedule={"jitter": 0, "interval": 600, "startup_spread": 60},
        workers=1,
    )


class Other:
    """Another process: its own Store on the same index, syncing its own config."""

    def __init__(self, path: Path) -> None:
        self.config = load_config(path)
        self.store = Store(self.config.settings.database, self.config.settings.posts_dir)

    def sync(self, path: Path | None = None) -> Config:
        if path is not None:
            self.config = load_config(path)
        self.store.sync_sources(self.config.sources, FIXED_NOW)
        return self.config


def other_syncs(
    shared: Shared, httpserver: HTTPServer, others: list[Other], *extra: dict[str, Any]
) -> Other:
    """Another process whose config has s0 (as ours) and ``extra``, synced."""
    theirs = config_at(
        shared.folder / "b", [source(serve_feed(httpserver, "f0"), "s0"), *extra], shared
    )
    other = Other(theirs)
    others.append(other)
    other.sync()
    return other


@pytest.fixture
def others() -> Iterator[list[Other]]:
    made: list[Other] = []
    yield made
    for other in made:
        other.store.close()


def start_service(path: Path, clock: Clock, made: list[Service]) -> Service:
    service = open_service(path, made, clock)
    service.start(paused=True)
    return service


def poll_claimed(service: Service, name: str) -> SourceOutcome:
    """Run the claim loop's tick and wait for the poll of ``name`` it started."""
    done: list[SourceOutcome] = []
    service.on_poll = done.append
    assert name in [c.name for c in service.claim_due()]
    return wait_for(lambda: next((o for o in done if o.source == name), None), f"poll of {name}")


# -- the reader ----------------------------------------------------------------------------


def test_sources_by_key_reads_a_batch_and_validates_once_per_fingerprint(
    tmp_path: Path, shared: Shared
) -> None:
    path = config_at(
        tmp_path,
        [
            source(
                "https://a.example.com/feed",
                "a",
                interval="2h",
                remove=["div.ad"],
                rules=[{"block": "sponsored", "field": "title"}],
                keep_days=30,
                full_text=True,
                full_text_selector="article",
            ),
            source("https://b.example.com/feed", "b", enabled=False),
            source("https://c.example.com/feed", "c"),
        ],
        shared,
    )
    other = Other(path)
    try:
        config = other.sync()
        config_c = config.source("c")
        assert config_c is not None
        other.store.sync_sources([s for s in config.sources if s.key != "c"], FIXED_NOW)

        found = other.store.sources_by_key(["a", "b", "c", "unknown", "a"], config)
        assert sorted(found) == ["a", "b"]  # c removed, unknown never synced
        assert found["a"].config is config.source("a")  # this process's own object
        assert found["b"].config.enabled is False and found["a"].problem is None

        rebuilt = other.store.sources_by_key(["a", "b"])  # no config: from the rows alone
        assert rebuilt["a"].config == config.source("a")
        assert rebuilt["a"].config.fingerprint() == rebuilt["a"].fingerprint
        again = other.store.sources_by_key(["a"])
        assert again["a"].config is rebuilt["a"].config  # validated once
        assert other.store.source_by_key("c") is None
    finally:
        other.store.close()


def test_fetch_options_come_only_from_a_config_with_the_synced_settings(
    tmp_path: Path, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_PASSWORD", "hunter2")
    secret = source(
        "https://p.example.com/feed",
        "p",
        username="reader",
        password="${FEED_PASSWORD}",
        headers={"X-Token": "t0ken"},
        user_agent="Reader (key-123)",
    )
    path = config_at(tmp_path, [secret], shared)
    other = Other(path)
    try:
        config = other.sync()
        own = other.store.source_by_key("p", config)
        assert own is not None and own.config is config.source("p") and own.missing == ()

        alone = other.store.source_by_key("p")
        assert alone is not None
        assert alone.missing == ("headers", "username", "password", "user_agent")
        assert alone.config.username is None and alone.config.headers == ()
        assert alone.problem == (
            "its secret fetch options (headers, username, password, user_agent: never "
            "stored in the index) are not in this process's config; reload"
        )

        monkeypatch.setenv("FEED_PASSWORD", "another")  # same settings, other secret
        changed = load_config(path)
        found = other.store.source_by_key("p", changed)
        assert found is not None and found.missing and found.config is not changed.source("p")
        raw = stored_bytes(other.store)
        assert b"hunter2" not in raw and b"t0ken" not in raw and b"key-123" not in raw
    finally:
        other.store.close()


# -- the service ---------------------------------------------------------------------------


def test_a_running_service_polls_a_source_another_process_synced(
    tmp_path: Path,
    shared: Shared,
    httpserver: HTTPServer,
    services: list[Service],
    others: list[Other],
) -> None:
    mine = config_at(tmp_path / "a", [source(serve_feed(httpserver, "f0"), "s0")], shared)
    clock = Clock()
    service = start_service(mine, clock, services)
    assert service.config.source("s9") is None and service.next_run("s9") is None

    other = other_syncs(shared, httpserver, others, source(serve_feed(httpserver, "f9"), "s9"))
    assert service.next_run("s9") == FIXED_NOW  # due at once, for any poller

    outcome = poll_claimed(service, "s9")
    assert outcome.ok and outcome.new == 1
    assert len(fetched(httpserver, "f9")) == 1
    assert [e["title"] for e in service.store.entries("s9")] == ["Post of f9"]
    assert service.config.source("s9") is None  # never loaded here

    # Disabled by the other process: not scheduled, and a claim of it (its time has come)
    # polls nothing.
    clock.now += timedelta(hours=1)
    off = source(httpserver.url_for("/f9"), "s9", enabled=False)
    other.sync(config_at(tmp_path / "b", [source(httpserver.url_for("/f0"), "s0"), off], shared))
    assert service.next_run("s9") is None
    assert "s9" in [c.name for c in service.claim_due()]
    assert service._wait_idle(30)
    assert len(fetched(httpserver, "f9")) == 1
    assert service.store.next_polls()["s9"] is None

    # Removed by it: gone from every reader, and its time cleared.
    other.sync(config_at(tmp_path / "b", [source(serve_feed(httpserver, "f0"), "s0")], shared))
    assert service.next_run("s9") is None and not service.refresh("s9")
    assert service.store.next_polls()["s9"] is None


def test_missing_secrets_are_recorded_and_never_fetched_without(
    tmp_path: Path,
    shared: Shared,
    httpserver: HTTPServer,
    services: list[Service],
    others: list[Other],
) -> None:
    mine = config_at(tmp_path / "a", [source(serve_feed(httpserver, "f0"), "s0")], shared)
    service = start_service(mine, Clock(), services)
    with_token = source(serve_feed(httpserver, "f9"), "s9", headers={"X-Token": "t0ken"})
    other_syncs(shared, httpserver, others, with_token)

    outcome = poll_claimed(service, "s9")
    assert fetched(httpserver, "f9") == []  # not fetched without its header
    assert outcome.error is not None and "(headers: never stored" in outcome.error
    state = service.store.source_state("s9") or {}
    assert "not in this process's config; reload" in (state.get("last_error") or "")
    assert state["lease_token"] is None  # the record ended the claim

    # This process's config gets the same source: polled, with its header.
    config_at(tmp_path / "a", [source(serve_feed(httpserver, "f0"), "s0"), with_token], shared)
    assert service.reload()
    assert service.refresh("s9")
    assert poll_claimed(service, "s9").ok
    assert [h.get("X-Token") for h in fetched(httpserver, "f9")] == ["t0ken"]


# -- the web -------------------------------------------------------------------------------


def test_the_web_reads_sources_by_key_from_the_index(
    tmp_path: Path,
    shared: Shared,
    httpserver: HTTPServer,
    services: list[Service],
    others: list[Other],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ADMIN_SECRET_ENV, SECRET)
    mine = config_at(tmp_path / "a", [source(serve_feed(httpserver, "f0"), "s0")], shared)
    service = start_service(mine, Clock(), services)
    other_syncs(shared, httpserver, others, source(serve_feed(httpserver, "f9"), "s9"))

    client = create_app(service.config, service.store, service).test_client()
    page = client.get("/sources/s9")
    assert page.status_code == 200 and httpserver.url_for("/f9") in page.get_data(as_text=True)
    assert client.get("/sources/nothing").status_code == 404

    login = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    client.post("/login", data={"secret": SECRET, "csrf": csrf.group(1)})
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert token is not None
    answer = client.post("/admin/sources/s9/pause", data={"csrf": token.group(1)})
    assert answer.status_code == 302
    assert (service.store.source_state("s9") or {})["status"] == "paused"
    answer = client.post("/admin/sources/s9/resume", data={"csrf": token.group(1)})
    assert answer.status_code == 302 and service.next_run("s9") == FIXED_NOW


def test_the_wsgi_app_syncs_the_config_it_loads(
    tmp_path: Path, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_at(tmp_path, [source("https://a.example.com/feed", "a")], shared)
    monkeypatch.setenv("AGGREGATOR_CONFIG", str(path))
    app = create_app()  # as gunicorn 'aggregator.web:create_app()' makes it
    store = app.extensions["aggregator"].store
    try:
        assert store.source_keys() == ["a"]
        assert app.test_client().get("/sources/a").status_code == 200
        assert app.test_client().get("/sources/b").status_code == 404
    finally:
        store.close()


# -- aggregator poll -----------------------------------------------------------------------


def test_aggregator_poll_skips_a_source_another_claimer_holds(
    tmp_path: Path, shared: Shared, httpserver: HTTPServer
) -> None:
    path = config_at(
        tmp_path,
        [source(serve_feed(httpserver, "f0"), "s0"), source(serve_feed(httpserver, "f1"), "s1")],
        shared,
    )
    config = load_config(path)
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        store.sync_sources(config.sources, FIXED_NOW)
        with store.transaction() as conn:  # a run's claim, far from its end
            held = claims.claim_one(conn, "s0", utcnow(), timedelta(days=1))
        assert held is not None

        result = CliRunner().invoke(cli, ["poll", "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert fetched(httpserver, "f0") == [] and len(fetched(httpserver, "f1")) == 1
        line = next(li for li in result.output.splitlines() if li.startswith("s0 "))
        assert "HELD (not polled: another poller holds it now" in line
        assert "1 held by another poller" in result.output
        s1 = store.source_state("s1") or {}
        assert s1["lease_token"] is None and s1["status"] == "ok"  # its lease ended
        assert (store.source_state("s0") or {})["lease_token"] == held  # still the run's

        with store.transaction() as conn:
            assert claims.release(conn, "s0", held)
        result = CliRunner().invoke(cli, ["poll", "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert len(fetched(httpserver, "f0")) == 1
        assert "held by another poller" not in result.output
        assert (store.source_state("s0") or {})["lease_token"] is None
    finally:
        store.close()


def test_poll_and_test_rules_find_sources_in_the_index(
    tmp_path: Path, shared: Shared, httpserver: HTTPServer
) -> None:
    path = config_at(tmp_path, [source(serve_feed(httpserver, "f0"), "s0")], shared)
    runner = CliRunner()
    result = runner.invoke(cli, ["poll", "--config", str(path), "--source", "nope"])
    assert result.exit_code == 2 and "no source named 'nope'" in result.output
    result = runner.invoke(cli, ["test-rules", "--config", str(path), "--source", "nope"])
    assert result.exit_code == 2 and "no source named 'nope'" in result.output
    args = ["test-rules", "--config", str(path), "--source", "s0", "--fetch", "--all"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "KEEP   s0: Post of f0  [fetched]" in result.output
    assert "1 entries: 1 kept, 0 dropped" in result.output


def test_claim_named_takes_free_and_expired_leases_only(tmp_path: Path, shared: Shared) -> None:
    path = config_at(
        tmp_path, [source(f"https://{n}.example.com/feed", n) for n in ("a", "b", "c")], shared
    )
    other = Other(path)
    try:
        other.sync()
        minute = timedelta(minutes=1)
        with other.store.transaction() as conn:
            live = claims.claim_one(conn, "a", FIXED_NOW, minute)
            claims.claim_one(conn, "b", FIXED_NOW - 2 * minute, minute)  # run out
        with other.store.transaction() as conn:
            taken = claims.claim_named(conn, ["a", "b", "c", "unknown"], FIXED_NOW, minute)
        assert sorted(taken) == ["b", "c"]
        assert (other.store.source_state("a") or {})["lease_token"] == live
        with other.store.transaction() as conn:
            claims.release_all(conn, taken | {"a": "not its token"}, done=False)
        states = {n: other.store.source_state(n) or {} for n in ("a", "b", "c")}
        assert [states[n]["lease_token"] for n in ("a", "b", "c")] == [live, None, None]
    finally:
        other.store.close()
