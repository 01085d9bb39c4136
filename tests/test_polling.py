"""Polling behaviour against a real HTTP server on 127.0.0.1 that scripts each answer.

Every scenario first stores a good article, then plays the behaviour, and ends by
checking the recorded state and that no article was lost or corrupted.
"""

from __future__ import annotations

import gzip
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import (
    FIXED_NOW,
    Gate,
    Harness,
    HarnessFactory,
    MakeConfig,
    force_render_key,
    item,
    rss,
    wait_for,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.models import SourceOutcome

pytestmark = pytest.mark.both_dialects

GOOD = rss(item("g1", "First post", "<p>Kept safe</p>"))
NEWER = rss(item("g2", "Second post", "<p>New</p>") + item("g1", "First post", "<p>Kept safe</p>"))
Script = list[Callable[[Request], Response]]


class Scripted:
    """A feed URL whose answers follow a script; it remembers the requests it saw."""

    def __init__(self, server: HTTPServer, path: str = "/feed") -> None:
        self.script: Script = []
        self.requests: list[dict[str, str]] = []
        self.url = server.url_for(path)
        server.expect_request(path).respond_with_handler(self._answer)

    def _answer(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        if not self.script:
            return Response("script exhausted", status=599)
        return self.script.pop(0)(request)

    def then(self, *answers: Callable[[Request], Response]) -> Scripted:
        self.script.extend(answers)
        return self


def ok(body: str | bytes = GOOD, **headers: str) -> Callable[[Request], Response]:
    return lambda _r: Response(body, headers={"Content-Type": "application/rss+xml", **headers})


def status(code: int, **headers: str) -> Callable[[Request], Response]:
    return lambda _r: Response("", status=code, headers=headers)


@pytest.fixture
def setup(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> Callable[..., tuple[Harness, Scripted]]:
    def make(**schedule: Any) -> tuple[Harness, Scripted]:
        scripted = Scripted(httpserver)
        schedule = {"jitter": 0, "floor": 1, "interval": 600, "max_failures": 3, **schedule}
        fetch = {"timeout": schedule.pop("timeout", 5)}
        h = harness(
            make_config(
                [{"url": scripted.url, "categories": ["A", "B", "C"], "name": "s"}],
                schedule=schedule,
                fetch=fetch,
            )
        )
        return h, scripted

    return make


def poll(h: Harness, *, manual: bool = False, minutes: int = 10) -> SourceOutcome:
    h.now += timedelta(minutes=minutes)
    [outcome] = h.poller.poll_sources(h.config.sources, manual=manual)
    return outcome


def snapshot(h: Harness) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in h.files()}


def state(h: Harness) -> dict[str, Any]:
    row = h.store.source_state("s")
    assert row is not None
    return row


def start_good(h: Harness, scripted: Scripted) -> dict[Path, bytes]:
    scripted.then(ok(GOOD, ETag='"v1"', **{"Last-Modified": "Mon, 01 Jan 2024 10:00:00 GMT"}))
    outcome = poll(h)
    assert outcome.ok
    assert outcome.new == 1
    return snapshot(h)


def test_200_then_304_after_etag(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    files = start_good(h, scripted)
    scripted.then(status(304))
    outcome = poll(h)
    assert scripted.requests[1]["If-None-Match"] == '"v1"'
    assert outcome.not_modified
    assert outcome.http_status == 304
    assert outcome.ok
    assert state(h)["status"] == "ok"
    assert state(h)["last_http_status"] == 304
    assert state(h)["etag"] == '"v1"'
    assert snapshot(h) == files


def test_a_new_version_or_new_render_settings_read_the_body_again(
    setup: Callable[..., tuple[Harness, Scripted]],
) -> None:
    """After an upgrade, a 304 would keep articles made the old way: no validators then."""
    h, scripted = setup()
    start_good(h, scripted)
    force_render_key(h.poller, "after an upgrade")
    scripted.then(ok(GOOD, ETag='"v1"'), status(304))
    outcome = poll(h)
    assert "If-None-Match" not in scripted.requests[1]
    assert "If-Modified-Since" not in scripted.requests[1]
    assert not outcome.not_modified
    assert outcome.unchanged == 1  # parsed again; the article's text had not changed
    assert state(h)["render_key"] == "after an upgrade"
    outcome = poll(h)  # from now on the validators apply again
    assert scripted.requests[2]["If-None-Match"] == '"v1"'
    assert outcome.not_modified


def test_304_after_last_modified(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    scripted.then(ok(GOOD, **{"Last-Modified": "Mon, 01 Jan 2024 10:00:00 GMT"}))
    assert poll(h).new == 1
    files = snapshot(h)
    scripted.then(status(304))
    outcome = poll(h)
    assert scripted.requests[1]["If-Modified-Since"] == "Mon, 01 Jan 2024 10:00:00 GMT"
    assert "If-None-Match" not in scripted.requests[1]
    assert outcome.not_modified
    assert snapshot(h) == files


def test_200_with_the_same_body_is_not_parsed_again(
    setup: Callable[..., tuple[Harness, Scripted]],
) -> None:
    h, scripted = setup()
    files = start_good(h, scripted)
    scripted.then(ok(GOOD))  # no validators honoured by this server: a full 200 again
    outcome = poll(h)
    assert outcome.http_status == 200
    assert outcome.not_modified
    assert (outcome.new, outcome.updated, outcome.unchanged) == (0, 0, 0)
    assert snapshot(h) == files


def test_new_content_after_a_304(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    start_good(h, scripted)
    scripted.then(status(304), ok(NEWER, ETag='"v2"'))
    assert poll(h).not_modified
    outcome = poll(h)
    assert (outcome.new, outcome.unchanged) == (1, 1)
    assert state(h)["etag"] == '"v2"'
    assert len(h.files()) == 2


def test_301_then_200_is_followed_and_suggested(
    httpserver: HTTPServer, setup: Callable[..., tuple[Harness, Scripted]]
) -> None:
    h, scripted = setup()
    files = start_good(h, scripted)
    target = Scripted(httpserver, "/moved").then(ok(NEWER))
    scripted.then(status(301, Location=target.url))
    outcome = poll(h)
    assert outcome.ok
    assert outcome.new == 1
    assert outcome.moved_to == target.url
    assert state(h)["moved_to"] == target.url
    assert all(snapshot(h)[p] == b for p, b in files.items())
    assert h.config.sources[0].url == scripted.url  # the config is never rewritten


def test_302_is_followed_silently(
    httpserver: HTTPServer, setup: Callable[..., tuple[Harness, Scripted]]
) -> None:
    h, scripted = setup()
    start_good(h, scripted)
    target = Scripted(httpserver, "/elsewhere").then(ok(NEWER))
    scripted.then(status(302, Location=target.url))
    outcome = poll(h)
    assert outcome.ok
    assert outcome.new == 1
    assert outcome.moved_to is None
    assert state(h)["moved_to"] is None


def test_410_pauses_the_source_as_gone(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    files = start_good(h, scripted)
    scripted.then(status(410))
    outcome = poll(h)
    assert not outcome.ok
    assert outcome.http_status == 410
    assert outcome.status == "gone"
    assert outcome.next_poll_at is None
    assert state(h)["status"] == "gone"
    assert "410" in state(h)["reason"]
    skipped = poll(h)
    assert skipped.skipped
    assert len(scripted.requests) == 2
    scripted.then(ok(GOOD))
    refreshed = poll(h, manual=True)  # a refresh asked for by the user polls it again
    assert refreshed.ok
    assert refreshed.status == "ok"
    assert snapshot(h) == files


def test_429_with_retry_after_is_honoured(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup(interval=60)
    files = start_good(h, scripted)
    scripted.then(status(429, **{"Retry-After": "7200"}))
    outcome = poll(h)
    assert outcome.status == "erroring"
    assert outcome.http_status == 429
    assert outcome.next_poll_at == h.now + timedelta(seconds=7200)
    assert state(h)["failures"] == 1
    assert snapshot(h) == files


def test_500s_back_off_pause_then_recover(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup(interval=600, max_failures=3)
    files = start_good(h, scripted)
    scripted.then(status(500), status(503), status(500))
    first, second = poll(h), poll(h)
    assert first.next_poll_at == h.now - timedelta(minutes=10) + timedelta(seconds=600)
    assert second.next_poll_at == h.now + timedelta(seconds=1200)  # doubled
    assert (first.status, second.status) == ("erroring", "erroring")
    third = poll(h)
    assert third.status == "paused"
    assert third.next_poll_at is None
    assert "3 failures in a row" in state(h)["reason"]
    assert poll(h).skipped
    scripted.then(ok(NEWER))
    recovered = poll(h, manual=True)
    assert recovered.ok
    assert recovered.status == "ok"
    assert recovered.new == 1
    assert state(h)["failures"] == 0
    assert state(h)["reason"] is None
    assert all(snapshot(h)[p] == b for p, b in files.items())
    history = h.store.polls("s")
    assert [p["http_status"] for p in history][:5] == [200, 500, 503, 500, 200][::-1]


def test_config_change_unpauses(
    setup: Callable[..., tuple[Harness, Scripted]], make_config: MakeConfig
) -> None:
    h, scripted = setup(max_failures=1)
    start_good(h, scripted)
    scripted.then(status(500))
    assert poll(h).status == "paused"
    text = h.config_path.read_text(encoding="utf-8").replace(
        "categories:", "interval: 900\n  categories:", 1
    )
    h.config_path.write_text(text, encoding="utf-8")
    h.close()
    h.reload()
    scripted.then(ok(GOOD))
    outcome = poll(h)
    assert not outcome.skipped
    assert outcome.status == "ok"


def test_slow_server_times_out_and_keeps_articles(
    setup: Callable[..., tuple[Harness, Scripted]],
) -> None:
    h, scripted = setup(timeout=0.5)
    files = start_good(h, scripted)
    gate = Gate()  # the answer is held until the poller has given up
    scripted.then(gate.held(ok(NEWER)))
    try:
        outcome = poll(h)
    finally:
        gate.open()
    assert gate.arrived == 1
    assert not outcome.ok
    assert "timed out" in str(outcome.error).lower()
    assert state(h)["status"] == "erroring"
    assert snapshot(h) == files
    assert h.store.count_entries() == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (ok(b"<rss>" + b"x" * 300_000), "larger than the 200000-byte limit"),
        (
            ok(
                "<!doctype html><html><body><h1>Welcome</h1></body></html>",
                **{"Content-Type": "text/html"},
            ),
            "not a usable feed",
        ),
        (ok(b""), "empty document"),
        (ok(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), "not a usable feed"),
    ],
    ids=["over the cap", "an HTML page", "an empty body", "binary noise"],
)
def test_bad_bodies_are_recorded_and_lose_nothing(
    setup: Callable[..., tuple[Harness, Scripted]],
    answer: Callable[[Request], Response],
    message: str,
) -> None:
    h, scripted = setup()
    h.poller.fetcher.max_bytes = 200_000
    files = start_good(h, scripted)
    scripted.then(answer)
    outcome = poll(h)
    assert not outcome.ok
    assert message in str(outcome.error)
    assert state(h)["status"] == "erroring"
    assert message in state(h)["last_error"]
    assert state(h)["etag"] == '"v1"'  # validators of the last good poll are kept
    assert snapshot(h) == files


def test_truncated_xml_keeps_what_it_can(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    files = start_good(h, scripted)
    document = NEWER[: NEWER.index("<item>", NEWER.index("<item>") + 1) + 30]
    scripted.then(ok(document))
    outcome = poll(h)
    assert outcome.ok
    assert outcome.new == 1
    assert any("cut short" in w for w in outcome.warnings)
    assert all(snapshot(h)[p] == b for p, b in files.items())


def test_gzip_body(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    scripted.then(ok(gzip.compress(NEWER.encode()), **{"Content-Encoding": "gzip"}))
    outcome = poll(h)
    assert outcome.ok
    assert outcome.new == 2


def test_wrong_charset_header(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup()
    body = rss(item("g", "镕基与陶喆", "<p>正文</p>"), encoding="gb2312").encode("gbk")
    scripted.then(ok(body, **{"Content-Type": "application/rss+xml; charset=ISO-8859-1"}))
    outcome = poll(h)
    assert outcome.ok
    assert [p.name for p in h.files()] == ["镕基与陶喆.md"]


def test_feed_ttl_and_cache_headers_stretch_the_interval(
    setup: Callable[..., tuple[Harness, Scripted]],
) -> None:
    h, scripted = setup(interval=600, ceiling=86400)
    with_ttl = GOOD.replace(
        "<description>test</description>", "<description>test</description><ttl>120</ttl>"
    )
    scripted.then(ok(with_ttl, **{"Cache-Control": "max-age=3600"}))
    outcome = poll(h)
    assert outcome.next_poll_at == h.now + timedelta(minutes=120)
    assert state(h)["interval"] == 7200


def test_history_keeps_the_last_n_polls(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup(history=3)
    start_good(h, scripted)
    scripted.then(*[status(304)] * 5)
    for _ in range(5):
        poll(h)
    polls = h.store.polls("s")
    assert len(polls) == 3
    assert all(p["not_modified"] for p in polls)


def test_next_poll_time_is_stored(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup(interval=600)
    start_good(h, scripted)
    assert h.store.next_polls() == {"s": FIXED_NOW + timedelta(minutes=10) + timedelta(seconds=600)}


def waiting_on_a_semaphore(prefix: str) -> int:
    """How many threads named ``prefix*`` are blocked acquiring a semaphore right now."""
    names = {t.ident: t.name for t in threading.enumerate()}
    acquire = threading.Semaphore.acquire.__code__  # BoundedSemaphore's too
    blocked = 0
    for ident, frame in sys._current_frames().items():
        if not names.get(ident, "").startswith(prefix):
            continue
        stack: FrameType | None = frame
        while stack is not None and stack.f_code is not acquire:
            stack = stack.f_back
        blocked += stack is not None
    return blocked


def test_per_host_limit_and_concurrency(
    make_config: MakeConfig, harness: HarnessFactory, threaded_httpserver: HTTPServer
) -> None:
    gate = Gate()  # every request is held until the test lets it through
    answer = gate.held(ok(GOOD))
    sources = []
    for n in range(6):
        threaded_httpserver.expect_request(f"/f{n}").respond_with_handler(answer)
        sources.append(
            {"url": threaded_httpserver.url_for(f"/f{n}"), "categories": [f"C{n}"], "name": f"s{n}"}
        )
    h = harness(make_config(sources, schedule={"concurrency": 6, "per_host": 2}))

    def settled(in_flight: int, waiting: int) -> bool:
        """The poll can go no further until the test answers (or broke the limit)."""
        if gate.active > 2:
            return True
        return gate.active == in_flight and waiting_on_a_semaphore("poll") == waiting

    with ThreadPoolExecutor(1) as background:
        polling = background.submit(h.poller.poll_sources, h.config.sources)
        try:
            for remaining in range(6, 0, -1):
                # Six sources on one host: two requests in flight and every other poll
                # thread waiting for the host's slot; a third request ends the wait.
                in_flight = min(remaining, 2)
                wait_for(
                    partial(settled, in_flight, remaining - in_flight),
                    f"{in_flight} requests in flight and the others waiting",
                )
                assert gate.active == in_flight
                gate.let_through()
        finally:
            gate.open()  # a failed check must not leave the poll hanging
        outcomes = polling.result(timeout=60)
    assert all(o.ok for o in outcomes)
    assert (gate.arrived, gate.peak) == (6, 2)  # never more than two requests at once
    h.close()
    h.reload()
    for name in ("s0", "s1"):
        stored = h.store.source_state(name)
        assert stored is not None, name
        assert stored["status"] == "ok"


def test_feed_ttl_still_counts_after_a_304(setup: Callable[..., tuple[Harness, Scripted]]) -> None:
    h, scripted = setup(interval=600, ceiling=86400)
    with_ttl = GOOD.replace(
        "<description>test</description>", "<description>test</description><ttl>120</ttl>"
    )
    scripted.then(ok(with_ttl, ETag='"t1"'), status(304))
    assert poll(h).next_poll_at == h.now + timedelta(minutes=120)
    outcome = poll(h)
    assert outcome.not_modified
    assert outcome.next_poll_at == h.now + timedelta(minutes=120)  # not back to 10 minutes
