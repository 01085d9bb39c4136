"""N requests through a WSGI app in process, for bench/serve --instructions.

Usage: python wsgi_requests.py ours|bare get|304 N CONFIG BODY_FILE

Builds the app (``ours``: aggregator's on CONFIG, asking for the 50-item category feed;
``bare``: bench/bare_app.py's on BODY_FILE), makes one warm-up request (which renders
and caches the feed) and 50 more, then N requests of the kind asked (a plain GET, or a
conditional one answered 304), each through the app's WSGI callable, the body read.
Run under callgrind with two values of N, the difference is the instructions of N
requests: no network, no server, no clock, so no noise from other work on the machine.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

HERE = Path(__file__).resolve().parent
FEED = "/feeds/%E6%9D%BF%E5%9D%970.rss"  # /feeds/板块0.rss


def environ(path: str, extra: dict[str, str]) -> dict[str, Any]:
    """A WSGI environ as waitress makes one for ``GET path`` from 127.0.0.1."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "HTTP_HOST": "127.0.0.1:8080",
        "REMOTE_ADDR": "127.0.0.1",
        **extra,
    }


class StartResponse:
    """The least a server does with an answer's status and headers: keep them (what a
    server then does with them is the server's work, the same for both apps)."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        self.status, self.headers = status, headers


def request(app: Callable[..., Iterable[bytes]], env: dict[str, Any]) -> StartResponse:
    """One request, its body read; the answer's status and headers."""
    seen = StartResponse()
    answer = app(env, seen)
    for _chunk in answer:
        pass
    close = getattr(answer, "close", None)
    if close is not None:
        close()
    return seen


def main() -> None:
    which, kind, count, config, body_file = sys.argv[1:6]
    if which == "ours":
        from aggregator.config import load_config
        from aggregator.web import create_app

        app: Any = create_app(load_config(config))
        path = FEED
    else:
        sys.path.insert(0, str(HERE))
        from bare_app import make_app

        app = make_app(Path(body_file).read_bytes())
        path = "/feed"
    first = request(app, environ(path, {}))
    assert first.status.startswith("200"), first.status
    extra = {"HTTP_IF_NONE_MATCH": dict(first.headers)["ETag"]} if kind == "304" else {}
    for _ in range(50):
        request(app, environ(path, extra))
    for _ in range(int(count)):
        seen = request(app, environ(path, extra))
    if int(count):
        assert seen.status.startswith("304" if kind == "304" else "200"), seen.status


if __name__ == "__main__":
    main()
