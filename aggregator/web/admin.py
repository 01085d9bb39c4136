"""Admin actions: log in with the secret, refresh / pause / resume a source, rebuild,
add a source.

POST only, each with a CSRF token bound to the session, and only for a session that
logged in with the admin secret. With no secret configured, the dashboard is read-only:
these views answer 403 and the pages show no buttons.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from aggregator.config import SourceConfig
from aggregator.content.discover import FoundFeed
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import Status
from aggregator.web.dashboard import ADMIN_SESSION_LIFETIME, is_admin
from aggregator.web.state import SourceAdder, app_state

bp = Blueprint("admin", __name__)
log = logging.getLogger(__name__)


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        abort(400, "missing or wrong CSRF token: reload the page and try again")


def _require_admin() -> None:
    if app_state().admin is None:
        abort(403, "the dashboard is read-only: no admin secret is configured")
    _check_csrf()
    if not is_admin():
        abort(403, "log in with the admin secret first")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """A form for the admin secret; failed attempts are throttled per client and in all."""
    state = app_state()
    admin = state.admin
    if admin is None:
        abort(403, "the dashboard is read-only: no admin secret is configured")
    if request.method == "POST":
        _check_csrf()
        client = request.remote_addr or "-"
        wait = state.login_throttle.retry_after(client)
        if wait is not None:  # even the right secret: a guess must not learn it was right
            log.warning("admin login from %s refused: too many failed attempts", client)
            flash("Too many failed attempts: try again later.")
            retry = str(max(1, math.ceil(wait)))
            return render_template("login.html"), 429, {"Retry-After": retry}
        given = request.form.get("secret", "")
        if hmac.compare_digest(given.encode(), admin.value.encode()):
            session.clear()
            session["admin"] = state.store.start_admin_session(
                admin.mark, state.clock.now(), ADMIN_SESSION_LIFETIME
            )
            csrf_token()  # a fresh token for the logged-in session
            flash("Logged in.")
            return redirect(url_for("dashboard.index"))
        state.login_throttle.failed(client)
        log.warning("failed admin login from %s", client)
        flash("Wrong secret.")
        return render_template("login.html"), 403
    return render_template("login.html")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the admin session, on the server too: a copy of the cookie stops working."""
    _check_csrf()
    session_id = session.get("admin")
    if isinstance(session_id, str):
        app_state().store.end_admin_session(session_id)
    session.clear()
    flash("Logged out.")
    return redirect(url_for("dashboard.index"))


def _source_or_404(name: str) -> SourceConfig:
    """The source by key from the index (a source only another process's config has is
    found too)."""
    found = app_state().source(name)
    if found is None:
        abort(404)
    return found.config


@bp.post("/admin/sources/<path:name>/refresh")
def refresh(name: str) -> ResponseReturnValue:
    """Poll a source as soon as possible (paused and gone ones too)."""
    _require_admin()
    _request_poll(name, _source_or_404(name).url)
    flash(f"Refresh of {name} scheduled.")
    return redirect(url_for("dashboard.source_page", name=name))


@bp.post("/admin/sources/<path:name>/pause")
def pause(name: str) -> ResponseReturnValue:
    """Stop polling a source until it is resumed."""
    _set_status(name, Status.PAUSED, "paused by the admin")
    flash(f"{name} paused.")
    return redirect(url_for("dashboard.source_page", name=name))


@bp.post("/admin/sources/<path:name>/resume")
def resume(name: str) -> ResponseReturnValue:
    """Poll a paused or gone source again, starting now."""
    _set_status(name, Status.OK, None)
    flash(f"{name} resumed.")
    return redirect(url_for("dashboard.source_page", name=name))


def _set_status(name: str, status: Status, reason: str | None) -> None:
    """Pause or resume a source: row updates that every poller honours. A poll in flight
    in another process cannot overwrite the change (``Store.set_status`` holds its
    claim); this process's own, the service here, is waited for."""
    _require_admin()
    source = _source_or_404(name)
    state = app_state()
    service = state.service
    with service.holding(name) if service is not None else contextlib.nullcontext():
        state.store.set_status(name, source.url, status.value, reason)
    if status is Status.OK:
        _request_poll(name, source.url)


def _request_poll(name: str, url: str) -> None:
    """Have a source polled at the next claim of any poller (the row is the request; the
    service here, if any, dates it by its own clock)."""
    state = app_state()
    if state.service is not None:
        state.service.refresh(name)
    else:
        state.store.request_poll(name, url, state.clock.now())


@bp.post("/admin/rebuild")
def rebuild() -> ResponseReturnValue:
    """Ask for every stored article to be cleaned and rewritten from its raw original:
    a job row, which a process with pollers runs in the background (this one at once,
    when it has them)."""
    _require_admin()
    if app_state().rebuilds.rebuild():
        flash("Rebuild asked for; articles are rewritten in the background.")
    else:
        flash("No rebuild asked for: one is already waiting or running.")
    return redirect(url_for("dashboard.index"))


# -- adding a source --------------------------------------------------------------------


def _adder() -> SourceAdder:
    adder = app_state().adder
    if adder is None:
        abort(
            409,
            "adding sources here needs `aggregator run`: run `aggregator add URL` or edit "
            "the config file",
        )
    return adder


def _add_form(error: str | None = None, status: int = 200, **values: Any) -> ResponseReturnValue:
    fields = {k: request.form.get(k, "") for k in ("url", "categories", "name")}
    return render_template("add_source.html", error=error, **fields, **values), status


def _path(text: str) -> tuple[str, ...] | None:
    """A category path typed in the form ("a / b / c"); None: the titles decide."""
    path = tuple(part.strip() for part in text.split("/") if part.strip())
    return path or None


def _problem(exc: AggregatorError) -> str:
    return exc.report() if isinstance(exc, ConfigError) else str(exc)


def _added(adder: SourceAdder, feed: FoundFeed, site_title: str) -> ResponseReturnValue:
    """Add ``feed`` with the form's categories and name; to its page, or the form again."""
    try:
        added = adder.add(
            feed,
            site_title=site_title,
            categories=_path(request.form.get("categories", "")),
            name=request.form.get("name", "").strip() or None,
        )
    except AggregatorError as exc:
        return _add_form(_problem(exc), 400)
    log.info("source %s added from the dashboard", added.name)
    flash(f"Added {added.name} ({' › '.join(added.categories)}).")
    if app_state().source(added.name) is None:  # the service has not synced it yet
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("dashboard.source_page", name=added.name))


@bp.route("/admin/sources/new", methods=["GET", "POST"])
def add_source() -> ResponseReturnValue:
    """The "Add source" form: a feed's URL or a web page's; its feeds are found, one is
    added (or the admin chooses among several)."""
    if request.method == "GET":
        if app_state().admin is None:
            abort(403, "the dashboard is read-only: no admin secret is configured")
        if not is_admin():
            return redirect(url_for("admin.login"))
        _adder()
        return _add_form()
    _require_admin()
    adder = _adder()
    url = request.form.get("url", "").strip()
    if not url:
        return _add_form("Give the URL of a feed or of a web page.", 400)
    try:
        found = adder.discover(url)
    except AggregatorError as exc:
        return _add_form(_problem(exc), 400)
    if len(found.feeds) == 1:
        return _added(adder, found.feeds[0], found.site_title)
    return _add_form(discovery=found)


@bp.post("/admin/sources/add")
def add_chosen() -> ResponseReturnValue:
    """Add the feed chosen among those a page has (checked again: a form can say anything)."""
    _require_admin()
    adder = _adder()
    try:
        feed = adder.check(request.form.get("feed", ""))
    except AggregatorError as exc:
        return _add_form(_problem(exc), 400)
    return _added(adder, feed, request.form.get("site_title", ""))
