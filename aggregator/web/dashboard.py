"""The dashboard: overview, source and article pages, /healthz, /metrics and /opml."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, g, jsonify, render_template, session
from flask.typing import ResponseReturnValue

from aggregator.config import Config
from aggregator.content.publish import entry_id
from aggregator.errors import StoreError
from aggregator.opml import export_opml
from aggregator.redact import redact
from aggregator.store import Store, claims
from aggregator.store.pages import body_origins, page_notes
from aggregator.web.state import app_state

bp = Blueprint("dashboard", __name__)

PROBLEM_STATES = ("erroring", "paused", "gone")
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


def source_rows(reveal: bool = False) -> list[dict[str, Any]]:
    """Every configured source with its state, for the overview and /healthz.

    Args:
        reveal: URLs in full, credentials and tokens included (for the admin).
    """
    app = app_state()
    config, store = app.config, app.store
    counts = store.entry_counts(app.clock.now() - timedelta(hours=24))
    states = store.source_states()
    rows = []
    for source in config.sources:
        state = states.get(source.key, {})
        status = state.get("status") or "new"
        if not source.enabled:
            status = "disabled"
        total, recent = counts.get(source.key, (0, 0))
        rows.append(
            {
                "name": source.key,
                "url": source.url,
                "path": " › ".join(source.categories),
                "status": status,
                "last_polled_at": state.get("last_polled_at"),
                # The claim loop's own schedule (paused and gone sources have none).
                "next_poll_at": state.get("next_poll_at"),
                "last_http_status": state.get("last_http_status"),
                "last_error": state.get("last_error"),
                "reason": state.get("reason"),
                "moved_to": state.get("moved_to"),
                "articles": total,
                "recent": recent,
            }
        )
    return [shown(row, reveal) for row in rows]


@bp.get("/")
def index() -> ResponseReturnValue:
    """Every source with its state, the category tree's feeds, the newest articles."""
    state = app_state()
    admin = is_admin()
    sources = source_rows(reveal=admin)
    return render_template(
        "index.html",
        sources=sources,
        articles=state.store.entries(limit=30),
        feeds=state.view.feed_links,
        totals=state.store.entry_totals(),
        problems=sum(1 for s in sources if s["status"] in PROBLEM_STATES),
        new_today=sum(s["recent"] for s in sources),
        admin=admin,
        admin_enabled=state.admin is not None,
        can_add=state.adder is not None,
        rebuild=state.rebuilds.rebuild_status if state.rebuilds is not None else None,
        hooks=hook_rows(admin),
        lateness=_lateness(),
        late_after=claims.LATE_AFTER,
        hooks_configured=bool(
            state.config.settings.hooks.on_change or state.config.settings.hooks.webhooks
        ),
    )


def _lateness() -> claims.Lateness:
    """How late the last hour's polls started (claim time - their next-poll time)."""
    state = app_state()
    with state.store.reading() as conn:
        return claims.lateness(conn, state.clock.now())


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
    source = state.config.source(name)
    if source is None:
        abort(404)
    admin = is_admin()
    [row] = [r for r in source_rows(reveal=admin) if r["name"] == name]
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
    service, store = state.service, state.store
    admin = is_admin()
    problems = (
        store.health() if admin else [_public(p, state.config, store) for p in store.health()]
    )
    if service is not None and service.last_reload_error is not None:
        report: str = service.last_reload_error
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
    places = {
        str(store.files.posts_dir): "settings.posts_dir",
        str(Path(config.settings.database).resolve().parent): "the database's folder",
    }
    for path, name in sorted(places.items(), key=lambda item: -len(item[0])):
        problem = problem.replace(path, name)
    return redact(problem)


@bp.app_context_processor
def service_banner() -> dict[str, Any]:
    """Every page shows the service's own problems in a banner until they are over."""
    return {"service_problems": service_problems()}


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """ok, or degraded with the reasons.

    503 when the service itself is impaired (``service_problems``); 200 when only some
    sources fail, are paused or gone: the service still does its job for the others.
    """
    problems = service_problems()
    try:
        sources = [
            f"{s['name']}: {s['status']}" + (f" ({s['last_error']})" if s["last_error"] else "")
            for s in source_rows()
            if s["status"] in PROBLEM_STATES
        ]
    except StoreError:
        if not problems:
            raise
        sources = []  # the database's problem is among the service's already
    reasons = problems + sources
    return jsonify(status="degraded" if reasons else "ok", reasons=reasons), (
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
    states: dict[str, int] = {}
    for row in source_rows():
        states[row["status"]] = states.get(row["status"], 0) + 1
    lines += [f'aggregator_sources{{status="{k}"}} {v}' for k, v in sorted(states.items())]
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
