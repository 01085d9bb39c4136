"""The web app: ``create_app()`` builds it; views read the store, never fetch or poll.

Run it inside ``aggregator run`` (with the polling service), by ``aggregator serve``, or
alone for a WSGI server: ``gunicorn 'aggregator.web:create_app()'`` with
``AGGREGATOR_CONFIG`` pointing at the configuration. It imports no poll module: the
service, the rebuild runner and the source adder (the Add source form's fetching and
config edit) are handed in by ``cli``, typed by protocols in ``state``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from aggregator import __version__
from aggregator.config import Config, database_connections, load_config
from aggregator.errors import ConfigError, StoreError
from aggregator.models import Person, byline, list_from_json
from aggregator.store import Store, jobs
from aggregator.web.cache import FeedCache
from aggregator.web.state import (
    EXTENSION,
    AdminSecret,
    AppState,
    Clock,
    Configs,
    PollService,
    Rebuilds,
    SecuredResponse,
    SourceAdder,
    SystemClock,
)
from aggregator.web.throttle import LoginThrottle
from aggregator.web.view import CurrentView

log = logging.getLogger(__name__)

ADMIN_SECRET_ENV = "AGGREGATOR_ADMIN_SECRET"


def template_folder() -> str:
    """Where the Jinja templates are: inside the installed package, or the repository's."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "templates"
    return str(installed if installed.is_dir() else here.parent / "templates")


def admin_secret(config: Config) -> str | None:
    """The admin secret: from the environment, else the config; None: read-only.

    Raises:
        ConfigError: the environment's secret is shorter than 12 characters.
    """
    secret = os.environ.get(ADMIN_SECRET_ENV)
    if secret is not None:
        if len(secret) < 12:
            raise ConfigError(
                ADMIN_SECRET_ENV, [f"${ADMIN_SECRET_ENV} must be at least 12 characters"]
            )
        return secret
    return config.settings.server.admin_secret


def sync_sources(store: Store, config: Config, now: datetime) -> None:
    """Sync ``config``'s sources into the index, which the views read sources from; a
    failure is logged (the app serves what the index has)."""
    try:
        store.sync_sources(config.sources, now)
    except StoreError as exc:
        log.error("sources not synced to the index: %s", exc)


def create_app(
    config: Config | None = None,
    store: Store | None = None,
    service: PollService | None = None,
    *,
    rebuilds: Rebuilds | None = None,
    clock: Clock | None = None,
    adder: SourceAdder | None = None,
    watch: Configs | None = None,
) -> Flask:
    """Build the web app.

    Args:
        config: the configuration; loaded from ``$AGGREGATOR_CONFIG`` (default
            ``config.yaml``) when not given.
        store: the store to read; opened from the configuration when not given.
        service: the polling service, when the app runs beside it (it follows the
            service's config reloads, and starts its rebuilds at once).
        rebuilds: who takes the dashboard's rebuilds without a service; by default a
            job row (``store/jobs.py``) for a process with pollers to run.
        clock: the app's time; the system's when not given.
        adder: who adds sources to the config file for the admin's "Add source" form;
            without one, the form says to edit the file or use ``aggregator add``.
        watch: without a service, who follows the config file (``ConfigWatch``);
            without either, the configuration given stays in force.

    The views read sources by key from the index's ``sources`` table: a caller that
    gives ``config`` syncs it there first (``sync_sources``; a service does at start),
    as the app does with the config it loads itself.
    """
    loaded = config is None  # the WSGI entry point: this app is the one process
    if config is None:
        config = load_config(os.environ.get("AGGREGATOR_CONFIG", "config.yaml"))
    if store is None:
        store = Store(
            config.settings.database,
            config.settings.posts_dir,
            connections=database_connections(config),
        )
    app = Flask(
        "aggregator",
        template_folder=template_folder(),
        static_folder=str(Path(__file__).resolve().parent / "static"),
        static_url_path="/static",
    )
    secret = admin_secret(config)
    # A random key kept in the database: it survives restarts, every process on the
    # database shares it, and a cookie tells nothing about the admin secret.
    app.secret_key = store.session_key()
    app.session_interface = CookielessSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=(config.settings.publish.base_url or "").startswith("https:"),
        MAX_CONTENT_LENGTH=config.settings.server.max_body,  # waitress refuses more first
    )
    publish = config.settings.publish
    cache = FeedCache(publish.cache_entries, int(publish.cache_mb * 1024 * 1024))
    clock = clock or SystemClock()
    if loaded:
        # The views read sources by key from the index: the config it loaded goes there
        # first, as every entry point does (``aggregator serve`` syncs its own; a
        # service at start and on reload).
        sync_sources(store, config, clock.now())
    app.extensions[EXTENSION] = AppState(
        store=store,
        cache=cache,
        service=service,
        rebuilds=service if service is not None else rebuilds or jobs.Requests(store, clock.now),
        admin=AdminSecret(secret, secret_mark(app.secret_key, secret)) if secret else None,
        login_throttle=LoginThrottle(clock=clock.monotonic),
        clock=clock,
        started_config=config,
        views=CurrentView(config),
        adder=adder,
        watch=watch,
        headers=security_headers(config),
    )
    if service is None:
        # Alone, the app is the one to put its configuration into the index's sources
        # table (the overview lists that); at once, as a service does at its start.
        app.extensions[EXTENSION].listed()
    app.jinja_env.globals["version"] = __version__
    app.jinja_env.filters["localtime"] = _localtime_filter(config.settings.server.timezone)
    app.jinja_env.filters["byline"] = _byline_filter

    from aggregator.web.admin import bp as admin
    from aggregator.web.dashboard import bp as dashboard
    from aggregator.web.feeds import bp as feeds

    app.register_blueprint(dashboard)
    app.register_blueprint(feeds)
    app.register_blueprint(admin)
    app.after_request(_security_headers(config))
    return app


class CookielessSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with nothing to do for a request without cookies.

    Flask opens the session of every request, and building its signing serializer cost
    a feed request more than serving the cached feed did (feed readers send no cookie).
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session when the request has no cookie, else Flask's."""
        if app.secret_key and not request.environ.get("HTTP_COOKIE"):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to do for a session that is empty and was never looked at (a feed
        reader's): Flask's would first work out every cookie setting it then ignores."""
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def secret_mark(key: str, secret: str) -> str:
    """Which admin secret a session logged in with, as recorded beside it.

    Keyed with the session key, not a plain hash of the secret: whoever can read the
    database could already sign an admin cookie, but a copy of the sessions alone tells
    nothing about the secret.
    """
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).hexdigest()


def _localtime_filter(zone: str) -> Any:
    tz = ZoneInfo(zone)

    def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return "—"
        return value.astimezone(tz).strftime(fmt)

    return localtime


def _byline_filter(row: Mapping[str, Any]) -> str:
    """An index row's byline: the entry's own authors, else the site."""
    return byline(list_from_json(Person, row.get("authors"))) or str(row.get("author") or "")


def security_headers(config: Config) -> tuple[tuple[str, str], ...]:
    """The headers every answer carries (the feeds put them in their own header list)."""
    frames = " ".join(f"https://{host}" for host in config.settings.iframe_hosts)
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' https: http: data:",
            f"frame-src {frames}" if frames else "frame-src 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "connect-src 'self'",
        ]
    )
    return (
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    )


def _security_headers(config: Config) -> Any:
    headers = security_headers(config)

    def add(response: Response) -> Response:
        if isinstance(response, SecuredResponse):
            return response  # a feed's: they are in its header list already
        for name, value in headers:
            response.headers.setdefault(name, value)
        return response

    return add
