"""Fetching http(s) sources from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator

import pytest
from conftest import Gate, HarnessFactory, MakeConfig, item, rss
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.errors import FetchError
from aggregator.poll.fetch import USER_AGENT, Fetcher


def test_fetch_sends_our_user_agent_and_decodes_gzip(httpserver: HTTPServer) -> None:
    body = rss(item("a", "Hello")).encode()
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("User-Agent", ""))
        return Response(
            gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
        )

    httpserver.expect_request("/feed").respond_with_handler(handler)
    fetched = Fetcher().fetch(httpserver.url_for("/feed"))
    assert fetched.body == body
    assert fetched.status == 200
    assert fetched.headers["content-type"] == "application/rss+xml"
    assert seen == [USER_AGENT]


def test_http_error_status_is_a_fetch_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_data("nope", status=404)
    with pytest.raises(FetchError, match="HTTP 404"):
        Fetcher().fetch(httpserver.url_for("/gone"))


def test_body_over_the_cap_is_refused_while_streaming(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(b"x" * 200_000)
    with pytest.raises(FetchError, match="larger than the 100000-byte limit"):
        Fetcher(max_bytes=100_000).fetch(httpserver.url_for("/big"))


def test_slow_server_times_out(httpserver: HTTPServer) -> None:
    gate = Gate()  # the answer is held until the client has given up
    httpserver.expect_request("/slow").respond_with_handler(gate.held(lambda _r: Response("late")))
    try:
        with pytest.raises(FetchError, match="cannot fetch"):
            Fetcher(timeout=0.3).fetch(httpserver.url_for("/slow"))
    finally:
        gate.open()
    assert gate.arrived >= 1  # the request was made, and left unanswered


def test_a_trickling_body_is_cut_at_the_total_deadline(httpserver: HTTPServer) -> None:
    # A byte every 50 ms restarts the read timeout every time: only a deadline that
    # interrupts the read in progress ends it while the server is still sending.
    stop = threading.Event()
    finished = threading.Event()

    def trickle(_request: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
            for _ in range(600):  # 30 s at most, then the answer ends by itself
                if stop.wait(0.05):
                    return
                yield b" "
            finished.set()

        return Response(body(), content_type="application/rss+xml")

    httpserver.expect_request("/trickle").respond_with_handler(trickle)
    try:
        with pytest.raises(FetchError, match=r"took longer than 0\.5 s"):
            Fetcher(timeout=5, total_timeout=0.5).fetch(httpserver.url_for("/trickle"))
        assert not finished.is_set()  # given up on while the server was still sending
    finally:
        stop.set()


def test_redirect_is_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for("/new")}
    )
    httpserver.expect_request("/new").respond_with_data(rss(item("a", "Moved")))
    fetched = Fetcher().fetch(httpserver.url_for("/old"))
    assert fetched.url.endswith("/new")
    assert b"Moved" in fetched.body


def test_unreachable_host_is_a_fetch_error() -> None:
    with pytest.raises(FetchError):
        Fetcher(timeout=1).fetch("http://127.0.0.1:9/feed")  # discard port: refused


def test_polling_an_http_source_with_a_wrong_charset_header(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    document = rss(item("g", "镕基与陶喆", "<p>正文</p>"), encoding="gb2312").encode("gbk")
    httpserver.expect_request("/gbk").respond_with_data(
        document, content_type="text/xml; charset=utf-8"
    )
    h = harness(make_config([{"url": httpserver.url_for("/gbk"), "categories": ["新闻"]}]))
    [outcome] = h.poll()
    assert outcome.ok
    assert outcome.new == 1
    [file] = h.files()
    assert file.name == "镕基与陶喆.md"
    assert "<p>正文</p>" in file.read_text(encoding="utf-8")
