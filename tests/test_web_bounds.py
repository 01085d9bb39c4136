"""The real server's bounds: idle and slow clients, oversized bodies (`aggregator run`)."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import start_run

from aggregator.config import MAX_BODY

# A deadline for an answer that must come at once; it only bounds a failing run.
ANSWER_DEADLINE = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`aggregator run` with the default bounds and no source; (host, port)."""
    root = tmp_path_factory.mktemp("bounds")
    config = root / "config.yaml"
    settings = {"posts_dir": "posts", "database": "index.sqlite", "workers": 1}
    config.write_text(yaml.safe_dump({"settings": {**settings, "server": {"port": 0}}}))
    process, base = start_run(config, root / "run.log")
    try:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send ``request`` and read the answer until the server closes the connection."""
    with socket.create_connection(address, timeout=ANSWER_DEADLINE) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_150_idle_and_slow_connections_leave_the_app_reachable(server: tuple[str, int]) -> None:
    with ExitStack() as stack:
        for n in range(150):
            conn = stack.enter_context(socket.create_connection(server, timeout=10))
            if n % 2:  # slowloris: a request that never ends its headers
                conn.sendall(b"GET /feeds/all.rss HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
        host, port = server
        url = f"http://{host}:{port}/feeds/all.rss"
        with urllib.request.urlopen(url, timeout=ANSWER_DEADLINE) as response:
            assert response.status == 200
            assert b"<rss" in response.read()


def test_an_oversized_body_is_refused_before_it_is_sent(server: tuple[str, int]) -> None:
    # Only the headers go out: the answer can only come from the declared length.
    answer = exchange(
        server,
        b"POST /feeds/all.rss HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 268435456\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_an_oversized_chunked_body_is_refused_past_the_limit(server: tuple[str, int]) -> None:
    # One chunk announced, cut short: the request is never complete, so the answer comes
    # from the limit. Exactly one byte past it is sent: more would still be unread when
    # the server closes, and the kernel would answer with a reset instead of the 413.
    head = b"%x\r\n" % MAX_BODY
    answer = exchange(
        server,
        b"POST /feeds/all.rss HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + head
        + b"a" * (MAX_BODY + 1 - len(head)),
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_body_within_the_limit_reaches_the_app(server: tuple[str, int]) -> None:
    body = b"x=" + b"a" * 1000
    answer = exchange(
        server,
        b"POST /feeds/all.rss HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert answer.startswith(b"HTTP/1.1 405 ")  # Flask's answer: feeds are read with GET
