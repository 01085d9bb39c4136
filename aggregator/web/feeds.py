"""Republished feeds: every level of the category tree and the named outputs, in RSS,
Atom and JSON Feed, with query filters, validators, 304s, gzip and a bounded cache.

URLs: ``/feeds/all.rss``, ``/feeds/<section>[/<site>[/<feed>]].<rss|atom|json>``,
``/outputs/<name>.<rss|atom|json>``; CJK names percent-encoded in the path.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import Headers

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

from aggregator import __version__
from aggregator.config import split_host
from aggregator.content.filter import Query, QueryError, parse_query
from aggregator.content.publish import FORMATS, Format, render
from aggregator.content.selection import (
    Selection,
    category_selection,
    feed_meta,
    output_selection,
)
from aggregator.web.cache import Rendered, content_etag
from aggregator.web.state import AppState, SecuredResponse, TrustedHeaders, app_state
from aggregator.web.view import WebView, bind_name

bp = Blueprint("feeds", __name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the changes of a feed no entry ever reached
BASES_KEPT = 64  # base URLs remembered per configuration, by the request's address
SELECTIONS_KEPT = 4096  # category feeds' selections remembered per configuration


def split_spec(spec: str) -> tuple[str, Format]:
    """'金融/新浪财经.rss' → ('金融/新浪财经', 'rss'); 404 for an unknown format."""
    path, dot, kind = spec.rpartition(".")
    if not dot or kind not in FORMATS or not path:
        abort(404)
    return path, kind  # type: ignore[return-value]


def base_url(view: WebView) -> str:
    """The absolute URL self links start with.

    ``publish.base_url`` when set; else the request's own root when its Host is trusted
    (a listed name, with no port or the server's own); else the server's own address.
    An arbitrary Host never reaches a self link nor the cache key: random names would
    fill and churn the cache, and put someone else's host into feeds served to all.
    """
    config = view.config
    configured = config.settings.publish.base_url
    if configured:
        return configured
    environ = request.environ
    seen = (
        environ.get("HTTP_HOST"),
        environ.get("SERVER_NAME"),
        environ.get("SERVER_PORT"),
        environ.get("wsgi.url_scheme"),
        environ.get("SCRIPT_NAME"),
    )
    known = view.bases.get(seen)
    if known is None:
        known = _base_url(view)
        if len(view.bases) >= BASES_KEPT:
            view.bases.clear()  # random Host headers: bounded, and rarely seen twice
        view.bases[seen] = known
    return known


def _base_url(view: WebView) -> str:
    config = view.config
    raw_port = str(request.environ.get("SERVER_PORT", ""))
    port = int(raw_port) if raw_port.isascii() and raw_port.isdigit() else 0
    host = split_host(request.host)
    allowed = view.trusted_hosts
    if host is not None and (
        host in allowed or ((host[0], None) in allowed and host[1] in (None, port))
    ):
        authority = request.host.lower()  # one cache key per name, whatever its case
    else:
        name = bind_name(config) or "localhost"
        default = {"http": 80, "https": 443}.get(request.scheme)
        authority = name if port in (0, default) else f"{name}:{port}"
    return f"{request.scheme}://{authority}{request.script_root}/"


def serve(
    state: AppState, view: WebView, selection: Selection, kind: Format, spec_path: str
) -> ResponseReturnValue:
    """Render (or reuse) a feed and answer with validators, 304, gzip."""
    store, cache = state.store, state.cache
    state.feed_requests[kind] += 1  # approximate under threads; for /metrics only
    settings = view.config.settings.publish
    if request.environ.get("QUERY_STRING"):
        try:
            query = parse_query(
                request.args.items(multi=True), settings.default_limit, settings.max_limit
            )
        except QueryError as exc:
            return Response(
                f"400 Bad Request: {exc}\n", status=400, content_type="text/plain; charset=utf-8"
            )
    else:  # most requests: no filters, the same query each time
        query = _plain_query(settings.default_limit, settings.max_limit)
    base = base_url(view)
    key = (view.fingerprint, selection.key, kind, query.key(), base)
    now, changes = state.clock.monotonic(), store.changes
    rendered = cache.get(key)
    version = None
    if rendered is not None and not rendered.trusted(now, changes):
        version = store.feed_version(selection)
        if version == rendered.version:
            rendered.confirm(now, changes)
        else:
            rendered = None
    cache.count(rendered is not None)
    if rendered is None:
        if version is None:  # read before the entries: never newer than them
            version = store.feed_version(selection)
        entries = store.selected(selection, query)  # as the static feeds read them
        # The time of the feed's newest change: the same in every process, and later
        # than any change a client may have seen (an entry may come, go or change
        # without a newer date of its own: RSS has no <updated>).
        modified = (version.changed_at or EPOCH).replace(microsecond=0)
        meta = feed_meta(
            selection,
            base=base,
            path=spec_path,
            generated=modified,  # an empty feed's updated time
            query=query.query_string(settings.default_limit),
        )
        rendered = Rendered(
            body=render(kind, meta, entries),
            content_type=FORMATS[kind],
            last_modified=modified,
            version=version,
            etag=content_etag(key, version, __version__),
        )
        rendered.headers = _headers(state, rendered, settings.max_age)
        rendered.confirm(now, changes)
        cache.put(key, rendered)
    return respond(state, rendered, settings.max_age, key)


@functools.lru_cache(maxsize=16)
def _plain_query(default_limit: int, max_limit: int) -> Query:
    """The query of a request without a query string (parsed once per limits)."""
    return parse_query((), default_limit, max_limit)


def _headers(
    state: AppState, rendered: Rendered, max_age: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The headers of a rendered feed's answers, plain and gzip, made once."""
    common = [
        ("Last-Modified", rendered.http_date),
        ("Cache-Control", f"public, max-age={int(max_age)}"),
        ("Vary", "Accept-Encoding"),
    ]
    # The gzip form is another representation: it gets its own (related) ETag.
    plain = [("ETag", rendered.etag), *common]
    zipped = [("ETag", rendered.etag[:-1] + '-gz"'), *common]
    for name, value in plain + zipped + list(state.headers):
        if "\n" in value or "\r" in value:
            raise ValueError(f"a line break in the {name} header")
    return plain, zipped


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (explicitly or by *, with q > 0)."""
    allowed: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        allowed[name.strip().lower()] = quality
    if "gzip" in allowed:
        return allowed["gzip"] > 0
    return allowed.get("*", 0.0) > 0


def respond(
    state: AppState, rendered: Rendered, max_age: float, key: tuple[object, ...] = ()
) -> Response:
    """The HTTP answer for a rendered feed: 304 when the client has it, gzip if asked."""
    environ = request.environ  # read directly: each ``request.headers`` look-up costs more
    zipped = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
    if rendered.headers is None:
        rendered.headers = _headers(state, rendered, max_age)
    headers = rendered.headers[1 if zipped else 0]
    if _not_modified(environ, rendered, headers[0][1]):
        # The validators and caching headers only: the client has the rest (RFC 9110).
        return SecuredResponse(status=304, headers=_trusted_headers(headers))
    if not zipped:
        body = rendered.body
    else:
        before = rendered.size
        body = rendered.gzipped()
        if rendered.size != before:
            state.cache.grew(key, rendered, before)
    answer = rendered.answers.get(zipped)
    if answer is None:
        # Content-Type first: Werkzeug looks for it in each new response's headers.
        answer = [
            ("Content-Type", rendered.content_type),
            ("Content-Length", str(len(body))),
            *headers,
            *state.headers,
        ]
        if zipped:
            answer.append(("Content-Encoding", "gzip"))
        rendered.answers[zipped] = answer
    # The body given as it is sent (a list of one bytes), with its length in the headers
    # already: Werkzeug's set_data would set the length header again, looking through
    # every header for it, and wrap the list in an encoding generator.
    response = SecuredResponse(headers=_trusted_headers(answer), direct_passthrough=True)
    response.response = [body]
    return response


def _trusted_headers(items: list[tuple[str, str]]) -> Headers:
    """A header set holding ``items`` as they are: ours, checked when made (``_headers``).

    Werkzeug checks every value of a list it is given for line breaks: on a cached feed,
    that was a tenth of the request's time in the app.
    """
    headers = TrustedHeaders()
    headers._list = list(items)  # werkzeug's own storage: a list of pairs
    return headers


def _not_modified(environ: WSGIEnvironment, rendered: Rendered, etag: str) -> bool:
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        if if_none_match == etag:  # the usual case: the one tag it was given
            return True
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return etag in tags or "*" in tags
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if when.tzinfo is not None:
            return rendered.last_modified <= when
    return False


@bp.get("/feeds/<path:spec>")
def category_feed(spec: str) -> ResponseReturnValue:
    """A level of the category tree, or /feeds/all."""
    path, kind = split_spec(spec)
    state = app_state()
    view = state.view
    try:
        selection = view.selections[path]
    except KeyError:
        selection = category_selection(view.config, path, view.categories)
        if len(view.selections) >= SELECTIONS_KEPT:
            view.selections.clear()  # random paths: bounded
        view.selections[path] = selection
    if selection is None:
        abort(404)
    return serve(state, view, selection, kind, f"feeds/{spec}")


@bp.get("/outputs/<path:spec>")
def output_feed(spec: str) -> ResponseReturnValue:
    """A named output from the config."""
    name, kind = split_spec(spec)
    state = app_state()
    view = state.view
    selection = output_selection(view.config, name)
    if selection is None:
        abort(404)
    return serve(state, view, selection, kind, f"outputs/{spec}")
