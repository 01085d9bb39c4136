"""The dashboard: overview, source and article pages, /healthz, /metrics and /opml."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, abort, g, jsonify, render_template, request, session
from flask.typing import ResponseReturnValue
from sqlalchemy.engine import Connection

from aggregator.config import Config, is_database_url
from aggregator.content.publish import entry_id
from aggregator.errors import StoreError
from aggregator.opml import export_opml
from aggregator.redact import redact
from aggregator.store import Store, claims, outbox
from aggregator.store.overview import (
    PROBLEMS,
    SORTS,
    STATES,
    Filters,
    new_since,
    state_counts,
    worst_sources,
)
from aggregator.store.overview import (
    source_page as list_sources,
)
from aggregator.store.pages import body_origins, page_notes
from aggregator.web.state import app_state

bp = Blueprint("dashboard", __name__)

PROBLEM_STATES = PROBLEMS
SOURCES_PER_PAGE = 100  # the overview's page: its HTML stays small with any number of sources
FEEDS_PER_PAGE = 50
HEALTH_WORST = 10  # the sources /healthz names
ADMIN_SESSION_LIFETIME = timedelta(days=7)
# What a source's state may quote of its URL: redacted unless the admin asks.
URL_BEARING = ("url", "error", "last_error", "reason", "moved_to")


def is_admin() -> bool:
    """True when this session logged in with the admin secret and has not logged out.

    The cookie only names the session; the database says whether it is still open. Asked
    once per request: a page, its banner and its rows all ask.
    """
    if "admin" not in g:
        state = app_state()
        session_id = session.get("admin")
        g.admin = (
            state.admin is not None
            and isinstance(session_id, str)
            and state.store.is_admin_session(
                session_id, state.admin.mark, state.clock.now(), ADMIN_SESSION_LIFETIME
            )
        )
    return bool(g.admin)


def shown(row: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """``row`` with the URLs and error texts it quotes redacted, unless ``reveal``.

    Error texts are stored redacted already; rows written before that was done are not.
    """
    if reveal:
        return row
    return {k: redact(v) if k in URL_BEARING and isinstance(v, str) else v for k, v in row.items()}


def _row(row: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """A page row as the templates show it (its next poll is the claim loop's own, from
    the row)."""
    return shown(row, reveal)


@dataclass(frozen=True, slots=True)
class OverviewQuery:
    """The overview's query string, checked: what to list and which page."""

    filters: Filters
    page: int  # of the sources, from 1
    feeds_page: int  # of the feed list, from 1

    @classmethod
    def parse(cls, args: Mapping[str, str], reveal: bool) -> OverviewQuery:
        """The query of ``args``.

        Raises:
            ValueError: a value that is not one of the allowed ones, said which.
        """
        state = args.get("state", "").strip()
        if state and state not in (*STATES, "problems"):
            raise ValueError(f"state must be one of {', '.join((*STATES, 'problems'))}")
        sort = args.get("sort", "config").strip() or "config"
        descending = sort.startswith("-")
        if sort.lstrip("-") not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)} (- in front: descending)")
        category = tuple(part for part in args.get("category", "").split("/") if part.strip())
        return cls(
            filters=Filters(
                state=state,
                category=category,
                search=args.get("q", "").strip()[:200],
                sort=sort.lstrip("-"),
                descending=descending,
                reveal=reveal,
            ),
            page=_page_number(args.get("page")),
            feeds_page=_page_number(args.get("feeds_page")),
        )

    def link(self, **changes: Any) -> str:
        """The overview's URL with this query, some values changed (None: dropped)."""
        f = self.filters
        params: dict[str, Any] = {
            "q": f.search,
            "state": f.state,
            "category": "/".join(f.category),
            "sort": ("-" if f.descending else "") + f.sort,
            "page": self.page if self.page > 1 else "",
            "feeds_page": self.feeds_page if self.feeds_page > 1 else "",
        }
        params.update(changes)
        kept = {k: v for k, v in params.items() if v not in (None, "", 1, "config")}
        return "/" + ("?" + urlencode(kept, safe="/") if kept else "")


TOTALS_TTL = 5.0  # seconds the overview's entry totals are reused


def _entry_figures(
    conn: Connection,
    store: Store,
    since: datetime,
    held: dict[str, tuple[float, dict[str, int], int]],
) -> tuple[dict[str, int], int]:
    """The entries kept, dropped and pruned, and those new since ``since``: each a count
    over every entry (a scan: tens of ms at 100,000 sources), so made at most every
    ``TOTALS_TTL`` seconds per app and shared by the requests meanwhile (``held``; two
    requests racing both count, either result is right)."""
    now = time.monotonic()
    found = held.get("totals")
    if found is not None and now - found[0] < TOTALS_TTL:
        return found[1], found[2]
    totals, new = store.entry_totals(), new_since(conn, since)
    held["totals"] = (now, totals, new)
    return totals, new


def _page_number(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 10**9))
    except ValueError:
        return 1


def _pages(count: int, size: int) -> int:
    return max(1, -(-count // size))


@bp.get("/")
def index() -> ResponseReturnValue:
    """One page of the sources (filtered, sorted and counted in SQL), a page of the
    category tree's feeds, the newest articles."""
    state = app_state()
    admin = is_admin()
    try:
        query = OverviewQuery.parse(request.args, reveal=admin)
    except ValueError as exc:
        return Response(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
    view = state.view
    since = state.clock.now() - timedelta(hours=24)
    pages = _pages(1, SOURCES_PER_PAGE)
    state.listed()
    with state.store.reading() as conn:
        first = list_sources(
            conn,
            query.filters,
            offset=(query.page - 1) * SOURCES_PER_PAGE,
            limit=SOURCES_PER_PAGE,
            since=since,
        )
        pages = _pages(first.matching, SOURCES_PER_PAGE)
        listing = first
        if query.page > pages:  # past the end (the list shrank): the last page
            query = replace(query, page=pages)
            listing = list_sources(
                conn,
                query.filters,
                offset=(pages - 1) * SOURCES_PER_PAGE,
                limit=SOURCES_PER_PAGE,
                since=since,
            )
        totals, new_today = _entry_figures(conn, state.store, since, state.entry_figures)
    rows = [_row(r, admin) for r in listing.rows]
    feeds = view.feeds_matching(query.filters.search)
    feed_pages = _pages(len(feeds), FEEDS_PER_PAGE)
    query = replace(query, feeds_page=min(query.feeds_page, feed_pages))
    start = (query.feeds_page - 1) * FEEDS_PER_PAGE
    return render_template(
        "index.html",
        sources=rows,
        listing=listing,
        query=query,
        pages=pages,
        page_first=(query.page - 1) * SOURCES_PER_PAGE + 1 if rows else 0,
        states=STATES,
        sorts=SORTS,
        articles=state.store.entries(limit=30),
        feeds=feeds[start : start + FEEDS_PER_PAGE],
        feeds_matching=len(feeds),
        feed_pages=feed_pages,
        totals=totals,
        problems=sum(listing.by_state[s] for s in PROBLEM_STATES),
        new_today=new_today,
        admin=admin,
        admin_enabled=state.admin is not None,
        can_add=state.adder is not None,
        rebuild=state.rebuilds.rebuild_status,
        hooks=hook_rows(admin),
        lateness=_lateness(),
        late_after=claims.LATE_AFTER,
        hooks_configured=bool(
            state.config.settings.hooks.on_change or state.config.settings.hooks.webhooks
        ),
    )


LATENESS_TTL = 5.0  # seconds the lateness figures are reused (by the app's clock)


def _lateness() -> claims.Lateness:
    """How late the last hour's polls started (claim time - their next-poll time).

    Summarised in SQL over the hour's claims (a row per poll: some 200,000 at 100,000
    sources polled every half hour, tens of ms to sum and rank), so at most every
    ``LATENESS_TTL`` seconds per app; the requests meanwhile share it.
    """
    state = app_state()
    now = state.clock.monotonic()
    held = state.lateness.get("last")
    if held is not None and now - held[0] < LATENESS_TTL:
        return held[1]
    with state.store.reading() as conn:
        late = claims.lateness(conn, state.clock.now())
    state.lateness["last"] = (now, late)
    return late


def hook_rows(reveal: bool, limit: int = 10) -> list[dict[str, Any]]:
    """The latest hook runs and webhook deliveries; what they quote of URLs is redacted
    unless ``reveal`` (a command's output may print a remote with its token)."""
    rows = app_state().store.hook_runs(limit)
    if reveal:
        return rows
    return [
        {
            k: redact(v) if k in ("target", "error", "output") and isinstance(v, str) else v
            for k, v in row.items()
        }
        for row in rows
    ]


@bp.get("/sources/<path:name>")
def source_page(name: str) -> ResponseReturnValue:
    """A source's poll history, suggestions, recent articles and dropped entries."""
    state = app_state()
    store = state.store
    indexed = state.source(name)
    if indexed is None:
        abort(404)
    source = indexed.config
    admin = is_admin()
    since = state.clock.now() - timedelta(hours=24)
    state.listed()
    with store.reading() as conn:
        # The index's row: also a source that another process synced, and this
        # process's config lacks.
        found = list_sources(conn, Filters(name=name), offset=0, limit=1, since=since)
    [row] = [_row(r, admin) for r in found.rows]
    articles = store.entries(name, limit=50)
    with store.reading() as conn:  # full text: where each body came from, and why
        origins = body_origins(conn, name, [a["key"] for a in articles])
        pages = page_notes(conn, name)
    return render_template(
        "source.html",
        source=source,
        row=row,
        polls=[shown(poll, admin) for poll in store.polls(name)],
        articles=articles,
        origins=origins,
        pages=[shown(p, admin) for p in pages],
        full_text=pages
        or (state.config.settings.full_text if source.full_text is None else source.full_text),
        dropped=store.dropped(name, limit=100),
        feed_path="/feeds/" + quote("/".join(source.categories)),
        admin=admin,
        admin_enabled=state.admin is not None,
    )


@bp.get("/articles/<uid>")
def article_page(uid: str) -> ResponseReturnValue:
    """One article: its sanitised body, its front matter, the original link, its file."""
    state = app_state()
    entry = state.store.entry(uid)
    if entry is None or entry["pruned_at"] is not None:
        abort(404)
    front_matter = ""
    if entry["path"]:
        front_matter = _front_matter(Path(state.config.settings.posts_dir) / entry["path"])
    link = entry["link"] if (entry["link"] or "").startswith(("http://", "https://")) else None
    with state.store.reading() as conn:
        origin = body_origins(conn, entry["source"], [entry["key"]]).get(entry["key"])
    return render_template(
        "article.html",
        entry=entry,
        origin=origin,
        front_matter=front_matter,
        # Relative to posts_dir (as stored): the machine's folders are nobody's business.
        file_path=entry["path"],
        link=link,
        feed_id=entry_id(uid),
    )


def _front_matter(path: Path) -> str:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[: 64 * 1024]
    except OSError:
        return ""
    match = re.match(r"^---\n(.*?)\n---\n", head, re.S)
    return match.group(1) if match else ""


def service_problems() -> list[str]:
    """What is wrong with the service itself, not with a source: storage faults, an
    unreadable database or posts folder, a config reload that was refused.

    In full for the admin. Anyone else learns that something is wrong, not the machine's
    paths, the URLs' secrets or the text of the configuration a refused reload quotes.
    """
    state = app_state()
    configs, store = state.configs, state.store
    admin = is_admin()
    problems = (
        store.health() if admin else [_public(p, state.config, store) for p in store.health()]
    )
    if configs is not None and configs.last_reload_error is not None:
        report: str = configs.last_reload_error
        if admin:
            detail = ":\n" + report
        else:
            count = sum(1 for line in report.splitlines() if line.startswith("  "))
            detail = (
                f" ({count} problem{'s' if count != 1 else ''}: the admin sees them here, "
                "`aggregator check-config` and the log list them)"
            )
        problems.append(
            "config reload refused; the previous configuration keeps running until the file "
            "is fixed" + detail
        )
    return problems


def _public(problem: str, config: Config, store: Store) -> str:
    """A storage problem as an anonymous visitor may read it: folders by their setting."""
    places = {str(store.files.posts_dir): "settings.posts_dir"}
    if not is_database_url(config.settings.database):
        places[str(Path(config.settings.database).resolve().parent)] = "the database's folder"
    for path, name in sorted(places.items(), key=lambda item: -len(item[0])):
        problem = problem.replace(path, name)
    return redact(problem)


@bp.app_context_processor
def service_banner() -> dict[str, Any]:
    """Every page shows the service's own problems in a banner until they are over."""
    return {"service_problems": service_problems()}


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """ok, or degraded with the reasons; the sources counted by state.

    503 when the service itself is impaired (``service_problems``); 200 when only some
    sources fail, are paused or gone: the service still does its job for the others.
    The reasons name the ten worst sources only (most failures in a row, then the longest
    without a good poll), and how many more need attention: the answer stays small with
    any number of sources.
    """
    problems = service_problems()
    state = app_state()
    by_state: dict[str, int] = {}
    try:
        state.listed()
        with state.store.reading() as conn:
            by_state = state_counts(conn)
            worst = worst_sources(conn, HEALTH_WORST)
        sources = [
            f"{s['name']}: {s['status']}"
            + (f" ({redact(s['last_error'])})" if s["last_error"] else "")
            for s in worst
        ]
        more = sum(by_state[s] for s in PROBLEM_STATES) - len(worst)
        if more > 0:
            sources.append(f"and {more} more sources erroring, paused or gone")
    except StoreError:
        if not problems:
            raise
        sources = []  # the database's problem is among the service's already
    reasons = problems + sources
    return jsonify(status="degraded" if reasons else "ok", reasons=reasons, sources=by_state), (
        503 if problems else 200
    )


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text exposition."""
    state = app_state()
    store = state.store
    counters = store.counters()
    totals = store.entry_totals()
    polls = counters.get("polls_total", 0)
    not_modified = counters.get("polls_not_modified_total", 0)
    seconds = counters.get("poll_seconds_total_ms", 0) / 1000
    lines = [
        "# HELP aggregator_polls_total Polls of sources.",
        "# TYPE aggregator_polls_total counter",
        f"aggregator_polls_total {polls}",
        "# HELP aggregator_poll_errors_total Polls that failed.",
        "# TYPE aggregator_poll_errors_total counter",
        f"aggregator_poll_errors_total {counters.get('poll_errors_total', 0)}",
        "# HELP aggregator_polls_not_modified_total Polls answered 304 or with an unchanged body.",
        "# TYPE aggregator_polls_not_modified_total counter",
        f"aggregator_polls_not_modified_total {not_modified}",
        "# HELP aggregator_not_modified_ratio Share of polls that needed no parsing.",
        "# TYPE aggregator_not_modified_ratio gauge",
        f"aggregator_not_modified_ratio {not_modified / polls if polls else 0:.4f}",
        "# HELP aggregator_poll_duration_seconds Time spent polling.",
        "# TYPE aggregator_poll_duration_seconds summary",
        f"aggregator_poll_duration_seconds_sum {seconds:.3f}",
        f"aggregator_poll_duration_seconds_count {polls}",
        "# HELP aggregator_entries Entries in the index.",
        "# TYPE aggregator_entries gauge",
        *(f'aggregator_entries{{state="{k}"}} {v}' for k, v in sorted(totals.items())),
        "# HELP aggregator_sources Sources by state.",
        "# TYPE aggregator_sources gauge",
    ]
    state.listed()
    with store.reading() as conn:
        states = {k: v for k, v in state_counts(conn).items() if v}
        waiting = outbox.backlog(conn)
    lines += [f'aggregator_sources{{status="{k}"}} {v}' for k, v in sorted(states.items())]
    lines += [
        "# HELP aggregator_outbox_rows Article changes pollers queued for the exporter.",
        "# TYPE aggregator_outbox_rows gauge",
        f"aggregator_outbox_rows {waiting}",
    ]
    late = _lateness()
    lines += [
        "# HELP aggregator_polls_last_hour Polls claimed in the last hour.",
        "# TYPE aggregator_polls_last_hour gauge",
        f"aggregator_polls_last_hour {late.polls}",
        f"# HELP aggregator_polls_late_last_hour Of those, polls that started over "
        f"{claims.LATE_AFTER:g} s after their time.",
        "# TYPE aggregator_polls_late_last_hour gauge",
        f"aggregator_polls_late_last_hour {late.late}",
        "# HELP aggregator_polls_late_ratio Share of the last hour's polls that started late.",
        "# TYPE aggregator_polls_late_ratio gauge",
        f"aggregator_polls_late_ratio {late.late_share:.4f}",
        "# HELP aggregator_poll_lateness_seconds Claim time minus next-poll time, last hour.",
        "# TYPE aggregator_poll_lateness_seconds summary",
        f'aggregator_poll_lateness_seconds{{quantile="0.5"}} {late.p50:.3f}',
        f'aggregator_poll_lateness_seconds{{quantile="0.99"}} {late.p99:.3f}',
        f"aggregator_poll_lateness_seconds_sum {late.total:.3f}",
        f"aggregator_poll_lateness_seconds_count {late.polls}",
        "# HELP aggregator_poll_lateness_le_seconds Last hour's polls at most this late.",
        "# TYPE aggregator_poll_lateness_le_seconds gauge",
        *(f'aggregator_poll_lateness_le_seconds{{le="{b:g}"}} {n}' for b, n in late.buckets),
        f'aggregator_poll_lateness_le_seconds{{le="+Inf"}} {late.polls}',
    ]
    lines += [
        "# HELP aggregator_feed_requests_total Requests for republished feeds.",
        "# TYPE aggregator_feed_requests_total counter",
        *(
            f'aggregator_feed_requests_total{{format="{k}"}} {v}'
            for k, v in sorted(state.feed_requests.items())
        ),
    ]
    return Response(
        "\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8"
    )


@bp.get("/favicon.ico")
def favicon() -> ResponseReturnValue:
    """No icon (browsers ask for one, e.g. when showing a feed)."""
    return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/opml")
def opml() -> ResponseReturnValue:
    """Every source as OPML, grouped by category; secrets in the URLs only for the admin."""
    config = app_state().config
    return Response(
        export_opml(config.sources, config.settings.publish.title, with_secrets=is_admin()),
        content_type="text/x-opml; charset=utf-8",
        headers={"Content-Disposition": 'inline; filename="aggregator.opml"'},
    )
