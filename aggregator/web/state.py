"""What the web app holds: one typed ``AppState`` in ``app.extensions``, made by
``create_app`` and only read by the views.

The web layer imports no poll module (``tests/test_layers.py`` checks it): what it needs
of the polling service is the ``PollService`` protocol below, which
``aggregator.poll.scheduler.Service`` satisfies, and time comes from an injected ``Clock``, so
tests move time forward instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, cast

from flask import Flask, Response, current_app
from werkzeug.datastructures import Headers

from aggregator.config import Config
from aggregator.content.discover import AddedSource, Discovery, FoundFeed
from aggregator.models import RebuildStatus
from aggregator.store import Store
from aggregator.store.catalog import IndexedSource
from aggregator.store.claims import Lateness
from aggregator.web.cache import FeedCache
from aggregator.web.throttle import LoginThrottle
from aggregator.web.view import CurrentView, WebView

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

EXTENSION = "aggregator"  # the key of the AppState in app.extensions


class Clock(Protocol):
    """The app's time."""

    def now(self) -> datetime:
        """Wall-clock UTC: what pages show, sessions expire by, feeds are dated with."""
        ...

    def monotonic(self) -> float:
        """Seconds that only move forward, for windows (the login throttle): a clock
        step must neither lift nor stretch a block."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class Rebuilds(Protocol):
    """Who rewrites every stored article from its raw original, in the background."""

    def rebuild(self) -> bool:
        """Start a rebuild; False when one is already running (or cannot start now)."""
        ...

    @property
    def rebuild_status(self) -> RebuildStatus:
        """How the latest rebuild went, or that it is running."""
        ...


class Configs(Protocol):
    """Who holds the configuration in force and follows its file: the service, or
    without one a ``ConfigWatch`` (``aggregator serve``)."""

    @property
    def config(self) -> Config:
        """The configuration in force (a reload brings a new one)."""
        ...

    @property
    def last_reload_error(self) -> str | None:
        """Why the latest config reload was refused; None when it was not."""
        ...


class PollService(Rebuilds, Configs, Protocol):
    """What the web app uses of the polling service (``aggregator run``)."""

    def next_run(self, name: str) -> datetime | None:
        """When a source is polled next (None: not scheduled)."""
        ...

    def refresh(self, name: str) -> bool:
        """Poll a source as soon as possible, even if paused or gone (its row is made due
        now, for the claim loop); False if unknown."""
        ...

    def holding(self, name: str) -> AbstractContextManager[None]:
        """Wait for a source's in-flight poll to end, and keep others out meanwhile."""
        ...


class SourceAdder(Protocol):
    """Who finds a URL's feeds and adds one to the config file (the "Add source" form).

    ``aggregator.poll.discovery.SourceAdder`` satisfies it: it fetches, so the web layer
    only asks. Each method raises an ``AggregatorError`` that says what went wrong.
    """

    def discover(self, url: str) -> Discovery:
        """The feeds of ``url``: itself if it is a feed, else its page's feeds."""
        ...

    def check(self, url: str) -> FoundFeed:
        """Fetch ``url`` once and parse it as a feed."""
        ...

    def add(
        self,
        feed: FoundFeed,
        *,
        site_title: str = "",
        categories: tuple[str, ...] | None = None,
        name: str | None = None,
    ) -> AddedSource:
        """Write ``feed`` to the config file as a new source (then the service reloads)."""
        ...


@dataclass(frozen=True, slots=True)
class AdminSecret:
    """The admin secret, when one is configured."""

    value: str
    mark: str  # which secret an admin session logged in with: a new secret ends old sessions


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything the views read: made once by ``create_app``, never replaced."""

    store: Store
    cache: FeedCache  # rendered feeds
    service: PollService | None  # None: the app runs alone (``aggregator serve``, WSGI)
    rebuilds: Rebuilds  # a rebuild is a job row; the service here, if any, starts it
    admin: AdminSecret | None  # None: no admin secret, the dashboard is read-only
    login_throttle: LoginThrottle
    clock: Clock
    started_config: Config  # in force when nothing reloads it
    views: CurrentView  # the WebView of the configuration in force
    adder: SourceAdder | None = None  # None: sources are added in the config file only
    watch: Configs | None = None  # follows the config file when no service does
    headers: tuple[tuple[str, str], ...] = ()  # the security headers of every answer
    # Requests per feed format, for /metrics (approximate under threads).
    feed_requests: dict[str, int] = field(default_factory=lambda: {"rss": 0, "atom": 0, "json": 0})
    # The overview's entry totals and when they were counted (``dashboard._entry_figures``).
    entry_figures: dict[str, tuple[float, dict[str, int], int]] = field(default_factory=dict)
    # The lateness figures and when they were summarised (``dashboard._lateness``).
    lateness: dict[str, tuple[float, Lateness]] = field(default_factory=dict)

    @property
    def view(self) -> WebView:
        """The configuration in force, with what the web derives from it."""
        configs = self.configs
        return self.views.of(configs.config if configs is not None else self.started_config)

    @property
    def configs(self) -> Configs | None:
        """Who follows the config file: the service, or the watch; None: nobody."""
        return self.service if self.service is not None else self.watch

    @property
    def config(self) -> Config:
        """The configuration in force (the service's, which follows reloads)."""
        return self.view.config

    def source(self, name: str) -> IndexedSource | None:
        """A configured source by key, from the index's ``sources`` table, which every
        process syncs its config into (a source this process's config lacks is found
        too); None: unknown or removed. The config in force lends its secrets when it
        has the synced settings (``Store.sources_by_key``)."""
        return self.store.source_by_key(name, self.config)

    def listed(self) -> None:
        """Make sure the index's ``sources`` table holds the configuration in force,
        which the overview, /healthz and /metrics list and count.

        The service syncs it at start and on each reload; an app that runs alone syncs
        its configuration when it is made (``create_app``), and here again only if that
        failed, or if a service's sync did: a sync of an unchanged configuration writes
        nothing.
        """
        config = self.config
        if self.store.synced_sources is not config.sources:
            self.store.sync_sources(config.sources, self.clock.now())


class TrustedHeaders(Headers):
    """A header list of ours, checked when it was made: looked into without Werkzeug's
    way of saying "absent" (an exception, made at each response's Content-Type check:
    more than a 304's own work)."""

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return super().__contains__(key)  # type: ignore[operator]
        wanted = key.lower()
        return any(name.lower() == wanted for name, _ in self._list)


class SecuredResponse(Response):
    """A feed's answer, its headers made once for its cached document: they carry the
    security headers already (the app's after-request step leaves it alone), and go
    out as they are (no Location to make absolute, the body's length set with it).
    No default Content-Type: a 304 has none."""

    default_mimetype = None

    def get_app_iter(self, environ: WSGIEnvironment) -> Iterable[bytes]:
        """The body as it is held (a list of one bytes), or none for a 304 or a HEAD:
        nothing to encode and nothing to close, so no closing wrapper around it."""
        if self.status_code == 304 or environ["REQUEST_METHOD"] == "HEAD":
            return ()
        return cast("Iterable[bytes]", self.response)

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        """The headers themselves: Werkzeug's copy and checks of every header value
        cost more than the rest of a 304 did."""
        return self.headers


def app_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (by default the app handling the request)."""
    state = (app or current_app).extensions[EXTENSION]
    if not isinstance(state, AppState):
        raise RuntimeError("the app was not made by aggregator.web.create_app")
    return state
