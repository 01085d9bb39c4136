"""The polling service: schedule, restart, reload — with a fixed clock, no sleeps."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import FIXED_NOW, MakeConfig, open_service
from pytest_httpserver import HTTPServer
from test_dashboard import SECRET

from aggregator.poll.scheduler import Service
from aggregator.web import ADMIN_SECRET_ENV, create_app

pytestmark = pytest.mark.both_dialects


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


def config_for(make_config: MakeConfig, urls: list[str], **schedule: object) -> Path:
    return make_config(
        [{"url": u, "categories": ["A", f"S{n}"], "name": f"s{n}"} for n, u in enumerate(urls)],
        schedule={"jitter": 0, "interval": 600, "startup_spread": 60, **schedule},
        workers=1,
    )


def test_new_sources_start_spread_over_the_startup_window(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    service = open_service(config_for(make_config, served_feeds), services, clock)
    service.start(paused=True)
    runs = {f"s{n}": service.next_run(f"s{n}") for n in range(3)}
    assert all(
        r is not None and FIXED_NOW <= r <= FIXED_NOW + timedelta(seconds=60) for r in runs.values()
    )
    assert len(set(runs.values())) == 3


def test_a_poll_reschedules_its_source_at_the_chosen_time(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    service = open_service(config_for(make_config, served_feeds), services, clock)
    service.start(paused=True)
    outcome = service._run("s0")
    assert outcome is not None and outcome.new == 1
    assert service.next_run("s0") == FIXED_NOW + timedelta(seconds=600)
    assert service.store.next_polls()["s0"] == FIXED_NOW + timedelta(seconds=600)


def test_restart_keeps_stored_times_and_forgets_no_source(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    path = config_for(make_config, served_feeds)
    first = open_service(path, services, clock)
    first.start(paused=True)
    first._run("s0")  # next poll of s0 stored: now + 600 s
    first.shutdown()
    clock.now += timedelta(seconds=100)
    second = open_service(path, services, clock)
    second.start(paused=True)
    assert second.next_run("s0") == FIXED_NOW + timedelta(seconds=600)  # not hammered now
    for name in ("s1", "s2"):  # never polled: soon, within the spread
        when = second.next_run(name)
        assert when is not None and clock.now <= when <= clock.now + timedelta(seconds=60)
    clock.now += timedelta(hours=2)
    third = open_service(path, services, clock)
    third.start(paused=True)
    when = third.next_run("s0")  # overdue after a long stop: soon, not forgotten
    assert when is not None and clock.now <= when <= clock.now + timedelta(seconds=60)


def test_paused_sources_wait_for_a_refresh(
    make_config: MakeConfig, httpserver: HTTPServer, services: list[Service]
) -> None:
    httpserver.expect_request("/broken").respond_with_data("no", status=500)
    clock = Clock()
    path = config_for(make_config, [httpserver.url_for("/broken")], max_failures=1)
    service = open_service(path, services, clock)
    service.start(paused=True)
    outcome = service._run("s0")
    assert outcome is not None and outcome.status == "paused"
    assert service.next_run("s0") is None
    restarted = open_service(path, services, clock)
    restarted.start(paused=True)
    assert restarted.next_run("s0") is None  # still paused after a restart
    assert restarted.refresh("s0")
    assert restarted.next_run("s0") == clock.now
    assert not restarted.refresh("nope")


def test_a_paused_source_whose_settings_change_is_polled_again(
    make_config: MakeConfig, httpserver: HTTPServer, services: list[Service]
) -> None:
    httpserver.expect_request("/broken").respond_with_data("no", status=500)
    clock = Clock()
    path = config_for(make_config, [httpserver.url_for("/broken")] * 2, max_failures=1)
    service = open_service(path, services, clock)
    service.start(paused=True)
    for name in ("s0", "s1"):
        outcome = service._run(name)
        assert outcome is not None and outcome.status == "paused"
    service.shutdown()
    # s0's settings change while the service is stopped: the sync at start wakes it.
    text = path.read_text(encoding="utf-8").replace("name: s0", "name: s0\n  interval: 1200")
    path.write_text(text, encoding="utf-8")
    restarted = open_service(path, services, clock)
    restarted.start(paused=True)
    woken = restarted.next_run("s0")
    assert woken is not None and FIXED_NOW <= woken <= FIXED_NOW + timedelta(seconds=60)
    assert restarted.next_run("s1") is None  # unchanged: still paused
    # s1's change arrives with a reload.
    text = path.read_text(encoding="utf-8").replace("name: s1", "name: s1\n  interval: 1200")
    path.write_text(text, encoding="utf-8")
    assert restarted.reload()
    woken = restarted.next_run("s1")
    assert woken is not None and FIXED_NOW <= woken <= FIXED_NOW + timedelta(seconds=60)


def test_reload_applies_added_removed_and_changed_sources(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    path = config_for(make_config, served_feeds[:2])
    service = open_service(path, services, clock)
    service.start(paused=True)
    service._run("s0")
    assert service.next_run("s0") == FIXED_NOW + timedelta(seconds=600)
    # s0 changes its interval, s1 goes, s2 comes.
    config_for(make_config, [served_feeds[0], served_feeds[2]])
    text = path.read_text(encoding="utf-8").replace("name: s1", "name: s2")
    text = text.replace("name: s0", "name: s0\n  interval: 1200")
    path.write_text(text, encoding="utf-8")
    assert service.reload()
    assert service.next_run("s1") is None
    assert service.next_run("s2") is not None
    changed = service.next_run("s0")
    assert changed is not None and changed <= FIXED_NOW + timedelta(seconds=60)
    outcome = service._run("s0")
    assert outcome is not None
    assert outcome.next_poll_at == FIXED_NOW + timedelta(seconds=1200)


def test_invalid_config_is_refused_and_the_old_one_keeps_running(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    path = config_for(make_config, served_feeds)
    service = open_service(path, services, clock)
    service.start(paused=True)
    before = {f"s{n}": service.next_run(f"s{n}") for n in range(3)}
    path.write_text(path.read_text(encoding="utf-8") + "bogus_key: 1\n", encoding="utf-8")
    assert not service.reload()
    assert service.last_reload_error is not None
    assert "bogus_key: unknown key" in service.last_reload_error
    assert {f"s{n}": service.next_run(f"s{n}") for n in range(3)} == before
    assert service.config.source("s1") is not None


def test_refused_reload_is_shown_until_a_valid_config_loads(
    make_config: MakeConfig,
    served_feeds: list[str],
    services: list[Service],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = config_for(make_config, served_feeds[:1])
    service = open_service(path, services, Clock())
    service.start(paused=True)
    client = create_app(service.config, service.store, service).test_client()
    good = path.read_text(encoding="utf-8")
    assert client.get("/healthz").status_code == 200
    pasted = f"outputs:\n- url: {served_feeds[1]}\n  categories: [B]\n"
    path.write_text(good + pasted, encoding="utf-8")
    assert not service.reload()
    answer = client.get("/healthz")
    assert answer.status_code == 503
    [reason] = answer.get_json()["reasons"]
    assert reason.startswith("config reload refused; the previous configuration keeps running")
    # Anonymous visitors learn that, not the file's text (which may quote a URL's token).
    assert "problems: the admin sees them here" in reason
    assert served_feeds[1] not in reason
    page = client.get("/").get_data(as_text=True)
    assert 'id="service-problems"' in page and served_feeds[1] not in page
    assert service.last_reload_error is not None
    assert "outputs[0].url: unknown key" in service.last_reload_error
    assert "looks like a source pasted under `outputs:`" in service.last_reload_error
    monkeypatch.setenv(ADMIN_SECRET_ENV, SECRET)
    admin = create_app(service.config, service.store, service).test_client()
    login = admin.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    admin.post("/login", data={"secret": SECRET, "csrf": csrf.group(1)})
    admin_page = admin.get("/").get_data(as_text=True)
    assert "looks like a source pasted under `outputs:`" in admin_page
    path.write_text(good, encoding="utf-8")
    assert service.reload()
    health = client.get("/healthz").get_json()
    assert health["status"] == "ok" and health["reasons"] == []
    assert 'id="service-problems"' not in client.get("/").get_data(as_text=True)


def test_config_file_change_is_noticed(
    make_config: MakeConfig, served_feeds: list[str], services: list[Service]
) -> None:
    clock = Clock()
    path = config_for(make_config, served_feeds)
    service = open_service(path, services, clock)
    service.start(paused=True)
    service.check_config()  # unchanged: nothing happens
    assert service.next_run("s2") is not None
    config_for(make_config, served_feeds[:2])
    service.check_config()
    assert service.next_run("s2") is None
