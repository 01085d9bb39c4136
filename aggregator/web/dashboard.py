"""The overview page and the health check (the full dashboard grows in later issues)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from aggregator.web import extension
from aggregator.web.feeds import feed_links

bp = Blueprint("dashboard", __name__)


def _sources() -> list[dict[str, object]]:
    ext = extension(current_app)
    config, store = ext["config"], ext["store"]
    service = ext["service"]
    rows = []
    for source in config.sources:
        state = store.source_state(source.key) or {}
        status = state.get("status") or "new"
        if not source.enabled:
            status = "disabled"
        next_poll = service.next_run(source.key) if service is not None else None
        rows.append(
            {
                "name": source.key,
                "url": source.url,
                "categories": " › ".join(source.categories),
                "status": status,
                "last_polled_at": state.get("last_polled_at"),
                "next_poll_at": next_poll or state.get("next_poll_at"),
                "last_http_status": state.get("last_http_status"),
                "last_error": state.get("last_error"),
                "reason": state.get("reason"),
                "moved_to": state.get("moved_to"),
                "articles": store.count_entries(source.key),
            }
        )
    return rows


@bp.get("/")
def index() -> ResponseReturnValue:
    """Every source with its state, and the newest articles."""
    store = extension(current_app)["store"]
    articles = store.entries()[:50]
    config = extension(current_app)["config"]
    return render_template(
        "index.html",
        sources=_sources(),
        articles=articles,
        now=datetime.now(UTC),
        feeds=feed_links(config),
    )


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """ok, or degraded with the reasons (failing, paused or gone sources)."""
    reasons = [
        f"{s['name']}: {s['status']}" + (f" ({s['last_error']})" if s["last_error"] else "")
        for s in _sources()
        if s["status"] in ("erroring", "paused", "gone")
    ]
    return jsonify(status="degraded" if reasons else "ok", reasons=reasons)
