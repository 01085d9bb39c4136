"""The web app: ``create_app()`` builds it; views read the store, never fetch or poll.

Run it inside ``aggregator run`` (with the polling service) or alone for a WSGI server:
``gunicorn 'aggregator.web:create_app()'`` with ``AGGREGATOR_CONFIG`` pointing at the
configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask

from aggregator import __version__
from aggregator.config import Config, load_config
from aggregator.store import Store
from aggregator.web.cache import FeedCache

if TYPE_CHECKING:
    from aggregator.scheduler import Service


def template_folder() -> str:
    """Where the Jinja templates are: inside the installed package, or the repository's."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "templates"
    return str(installed if installed.is_dir() else here.parent / "templates")


def create_app(
    config: Config | None = None,
    store: Store | None = None,
    service: Service | None = None,
) -> Flask:
    """Build the web app.

    Args:
        config: the configuration; loaded from ``$AGGREGATOR_CONFIG`` (default
            ``config.yaml``) when not given.
        store: the store to read; opened from the configuration when not given.
        service: the polling service, when the app runs beside it.
    """
    if config is None:
        config = load_config(os.environ.get("AGGREGATOR_CONFIG", "config.yaml"))
    if store is None:
        store = Store(config.settings.database, config.settings.posts_dir)
    app = Flask("aggregator", template_folder=template_folder(), static_folder=None)
    publish = config.settings.publish
    cache = FeedCache(publish.cache_entries, int(publish.cache_mb * 1024 * 1024))
    app.extensions["aggregator"] = {
        "config": config,
        "store": store,
        "service": service,
        "cache": cache,
    }
    app.jinja_env.globals["version"] = __version__

    from aggregator.web.dashboard import bp as dashboard
    from aggregator.web.feeds import bp as feeds

    app.register_blueprint(dashboard)
    app.register_blueprint(feeds)
    return app


def extension(app: Flask) -> dict[str, Any]:
    """The objects the views read (config, store, service, cache)."""
    value: dict[str, Any] = app.extensions["aggregator"]
    service = value["service"]
    if service is not None and service.config is not value["config"]:
        value["config"] = service.config  # reloaded by the service: follow it
    return value
