"""Republished feeds: every level of the category tree and the named outputs, in RSS,
Atom and JSON Feed, with query filters, validators, 304s, gzip and a bounded cache.

URLs: ``/feeds/all.rss``, ``/feeds/<section>[/<site>[/<feed>]].<rss|atom|json>``,
``/outputs/<name>.<rss|atom|json>``; CJK names percent-encoded in the path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, request
from flask.typing import ResponseReturnValue

from aggregator.config import Config, split_host
from aggregator.filter import Query, QueryError, Rule, in_selection, parse_query, verdict
from aggregator.models import PublishedEntry
from aggregator.publish import FORMATS, FeedMeta, Format, feed_updated, render
from aggregator.store import Store
from aggregator.web import extension
from aggregator.web.cache import FeedCache, Rendered

bp = Blueprint("feeds", __name__)
T = TypeVar("T")

PAGE = 200  # rows read per query while filters drop entries


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries a feed shows."""

    key: str  # identifies the feed (cache key, feed id)
    title: str
    description: str
    home: str  # path of its dashboard page
    categories: tuple[tuple[str, ...], ...] = ()
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    limit: int | None = None  # the output's own cap


def split_spec(spec: str) -> tuple[str, Format]:
    """'金融/新浪财经.rss' → ('金融/新浪财经', 'rss'); 404 for an unknown format."""
    path, dot, kind = spec.rpartition(".")
    if not dot or kind not in FORMATS or not path:
        abort(404)
    return path, kind  # type: ignore[return-value]


def per_config(name: str, config: Config, compute: Callable[[Config], T]) -> T:
    """A value derived from the configuration, computed once per configuration (a reload
    brings a new one)."""
    ext = extension(current_app)
    cached = ext.get(name)
    if cached is None or cached[0] is not config:
        cached = (config, compute(config))
        ext[name] = cached
    value: T = cached[1]
    return value


def config_key(config: Config) -> str:
    """A fingerprint of the configuration: a reload (new titles, rules, outputs) makes
    every rendered feed stale, not only a change of entries."""
    return per_config(
        "config_key", config, lambda c: hashlib.sha1(c.model_dump_json().encode()).hexdigest()[:16]
    )


def category_tree(config: Config) -> frozenset[tuple[str, ...]]:
    """The config's category tree, computed once per configuration."""
    return per_config("tree", config, lambda c: frozenset(c.categories()))


def category_selection(config: Config, path: str) -> Selection:
    """The selection for a level of the category tree (or 'all')."""
    settings = config.settings.publish
    if path == "all":
        return Selection("all", f"{settings.title}: all", settings.description, "/")
    levels = tuple(path.split("/"))
    if levels not in category_tree(config):
        abort(404)
    return Selection(
        f"category:{path}",
        f"{settings.title}: {' › '.join(levels)}",
        f"{settings.description} — {' › '.join(levels)}",
        "/",
        categories=(levels,),
    )


def output_selection(config: Config, name: str) -> Selection:
    """The selection of a named output from the config."""
    output = config.output(name)
    if output is None:
        abort(404)
    settings = config.settings.publish
    return Selection(
        f"output:{name}",
        output.title or f"{settings.title}: {name}",
        output.description or settings.description,
        "/",
        categories=output.categories,
        sources=output.sources,
        tags=output.tags,
        rules=tuple(r.rule() for r in output.rules),
        limit=output.limit,
    )


def select(store: Store, selection: Selection, query: Query) -> list[PublishedEntry]:
    """The entries of a feed: the selection, then rules and query filters, newest first."""
    limit = min(query.limit, selection.limit or query.limit)
    found: list[PublishedEntry] = []
    for entry in _iterate(store, selection, query):
        if not in_selection(entry, selection.tags):
            continue
        if selection.rules and verdict(selection.rules, entry) is not None:
            continue
        if not query.matches(entry):
            continue
        found.append(entry)
        if len(found) >= limit:
            break
    return found


def _iterate(store: Store, selection: Selection, query: Query) -> Iterator[PublishedEntry]:
    before = None
    filtered = bool(selection.tags or selection.rules or query.q or query.exclude or query.author)
    page = PAGE if filtered else query.limit
    while True:
        rows = store.published(
            categories=selection.categories,
            sources=selection.sources,
            since=query.since,
            before=before,
            limit=page,
        )
        for _, entry in rows:
            yield entry
        if len(rows) < page:
            return
        last_id, last = rows[-1]
        before = (last.date, last_id)


LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
WILDCARD = ("", "0.0.0.0", "::", "[::]")


def bind_name(config: Config) -> str | None:
    """The address the server listens on, as written in a Host header; None: any."""
    bind = config.settings.server.host.lower()
    if bind in WILDCARD:
        return None
    return f"[{bind}]" if ":" in bind else bind


def trusted_hosts(config: Config) -> frozenset[tuple[str, int | None]]:
    """(name, port or None) of the Host headers self links may be built from."""
    names = [*LOOPBACK, *config.settings.server.trusted_hosts, bind_name(config) or ""]
    return frozenset(parsed for parsed in map(split_host, names) if parsed is not None)


def base_url(config: Config) -> str:
    """The absolute URL self links start with.

    ``publish.base_url`` when set; else the request's own root when its Host is trusted
    (a listed name, with no port or the server's own); else the server's own address.
    An arbitrary Host never reaches a self link nor the cache key: random names would
    fill and churn the cache, and put someone else's host into feeds served to all.
    """
    configured = config.settings.publish.base_url
    if configured:
        return configured
    raw_port = str(request.environ.get("SERVER_PORT", ""))
    port = int(raw_port) if raw_port.isascii() and raw_port.isdigit() else 0
    host = split_host(request.host)
    allowed = per_config("hosts", config, trusted_hosts)
    if host is not None and (
        host in allowed or ((host[0], None) in allowed and host[1] in (None, port))
    ):
        authority = request.host.lower()  # one cache key per name, whatever its case
    else:
        name = bind_name(config) or "localhost"
        default = {"http": 80, "https": 443}.get(request.scheme)
        authority = name if port in (0, default) else f"{name}:{port}"
    return f"{request.scheme}://{authority}{request.script_root}/"


def serve(selection: Selection, kind: Format, spec_path: str) -> ResponseReturnValue:
    """Render (or reuse) a feed and answer with validators, 304, gzip."""
    ext = extension(current_app)
    config: Config = ext["config"]
    store: Store = ext["store"]
    cache: FeedCache = ext["cache"]
    ext["feed_requests"][kind] += 1  # approximate under threads; for /metrics only
    settings = config.settings.publish
    try:
        query = parse_query(
            request.args.items(multi=True), settings.default_limit, settings.max_limit
        )
    except QueryError as exc:
        return Response(
            f"400 Bad Request: {exc}\n", status=400, content_type="text/plain; charset=utf-8"
        )
    base = base_url(config)
    key = (config_key(config), selection.key, kind, query.key(), base)
    version = store.content_version()
    rendered = cache.get(key, version)
    if rendered is None:
        entries = select(store, selection, query)
        meta = FeedMeta(
            title=selection.title,
            description=selection.description,
            feed_url=base
            + quote(spec_path.lstrip("/"))
            + query.query_string(settings.default_limit),
            home_url=base.rstrip("/") + selection.home,
            key=selection.key,
            generated=datetime.now(UTC).replace(microsecond=0),
        )
        body = render(kind, meta, entries)
        previous = cache.peek(key)
        if previous is not None and previous.body == body:
            modified = previous.last_modified  # same bytes: not modified since then
        else:
            # The document changed now: entries may have come, gone or changed without
            # a newer date (RSS has no <updated>), so the newest entry date is not enough.
            modified = max(feed_updated(meta, entries), meta.generated).replace(microsecond=0)
        rendered = Rendered(
            body=body, content_type=FORMATS[kind], last_modified=modified, version=version
        )
        cache.put(key, rendered)
    return respond(rendered, settings.max_age, key)


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


def respond(rendered: Rendered, max_age: float, key: tuple[object, ...] = ()) -> Response:
    """The HTTP answer for a rendered feed: 304 when the client has it, gzip if asked."""
    zipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    # The gzip form is another representation: it gets its own (related) ETag.
    etag = rendered.etag[:-1] + '-gz"' if zipped else rendered.etag
    headers = {
        "ETag": etag,
        "Last-Modified": rendered.http_date,
        "Cache-Control": f"public, max-age={int(max_age)}",
        "Vary": "Accept-Encoding",
    }
    if _not_modified(rendered, etag):
        return Response(status=304, headers=headers)
    body = rendered.body
    if zipped:
        cache: FeedCache = extension(current_app)["cache"]
        before = rendered.size
        body = rendered.gzipped()
        if rendered.size != before:
            cache.grew(key, rendered, before)
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers, content_type=rendered.content_type)


def _not_modified(rendered: Rendered, etag: str) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return etag in tags or "*" in tags
    since = request.headers.get("If-Modified-Since")
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
    selection = category_selection(extension(current_app)["config"], path)
    return serve(selection, kind, f"feeds/{spec}")


@bp.get("/outputs/<path:spec>")
def output_feed(spec: str) -> ResponseReturnValue:
    """A named output from the config."""
    name, kind = split_spec(spec)
    selection = output_selection(extension(current_app)["config"], name)
    return serve(selection, kind, f"outputs/{spec}")


def feed_links(config: Config) -> Sequence[tuple[str, str]]:
    """(label, path without format) for every feed: all, each category level, each output."""
    links = [("All", "/feeds/all")]
    for levels in sorted(config.categories()):
        links.append((" › ".join(levels), "/feeds/" + quote("/".join(levels))))
    for output in config.outputs:
        links.append((output.title or output.name, "/outputs/" + quote(output.name)))
    return links
