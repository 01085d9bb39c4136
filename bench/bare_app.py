"""The Python ceiling for bench/serve: a bare Flask app returning fixed bytes, on waitress.

Usage: python bare_app.py BODY_FILE PORT THREADS
It answers GET /feed with the bytes (and a 304 to a matching If-None-Match), nothing else.
"""

import sys
from pathlib import Path

import waitress
from flask import Flask, Response, request

ETAG = '"bare"'


def make_app(body: bytes) -> Flask:
    """The bare app serving ``body`` (also run in process by bench/wsgi_requests.py)."""
    app = Flask("bare")

    @app.get("/feed")
    def feed() -> Response:
        if request.headers.get("If-None-Match") == ETAG:
            return Response(status=304, headers={"ETag": ETAG})
        return Response(
            body, content_type="application/rss+xml; charset=utf-8", headers={"ETag": ETAG}
        )

    return app


def main() -> None:
    body_file, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = make_app(Path(body_file).read_bytes())
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, ident="bare")


if __name__ == "__main__":
    main()
