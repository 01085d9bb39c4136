"""The configuration of a web app that runs without a service (``aggregator serve``, a
replica): it follows its file as a service does.

Replicas behind one cache must serve one configuration (its fingerprint is in every
feed's validators), and a source added on one replica's dashboard must reach the others
and the pollers: every role reads the same file, and each follows it. The file, and the
files it includes, are looked at every ``CHECK_SECONDS`` (and at once after the "Add
source" form wrote it); a valid new one is synced into the index (where pollers read
sources from) and comes in force; an invalid one is refused with its report, shown on
the dashboard, and the old one stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aggregator.config import Config, config_stamp, load_config
from aggregator.errors import ConfigError, StoreError
from aggregator.redact import redact
from aggregator.store import Store

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0  # as a service's config watch


class ConfigWatch:
    """The configuration in force for an app without a service, following its file.

    Args:
        path: the config file.
        config: its content, validated at start.
        store: the index the sources are synced into.
        clock: the current UTC time.
    """

    def __init__(
        self, path: str | Path, config: Config, store: Store, clock: Callable[[], datetime]
    ) -> None:
        self.path = Path(path)
        self.store = store
        self.clock = clock
        self.last_reload_error: str | None = None  # why the latest reload was refused
        self._config = config
        self._stamp = config_stamp(self.path, config.include)
        self._lock = threading.Lock()  # one check at a time (the thread, the form)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    def check(self) -> bool:
        """Reload the configuration if its file, or a file it includes, changed.

        Returns:
            True when a new configuration came in force.
        """
        with self._lock:
            stamp = config_stamp(self.path, self._config.include)
            if stamp is None or stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                new = load_config(self.path)
            except ConfigError as exc:
                self.last_reload_error = exc.report()
                log.error(
                    "config reload refused, the previous config stays in force:\n%s",
                    redact(exc.report()),
                )
                return False
            self.last_reload_error = None
            try:
                self.store.sync_sources(new.sources, self.clock())
            except StoreError as exc:  # served anyway: the next reload syncs again
                log.error("sources not synced to the index: %s", exc)
            self._config = new
            log.info("config reloaded from %s", self.path)
            return True

    def start(self) -> None:
        """Look at the file every ``CHECK_SECONDS`` on a thread of its own."""
        self._thread = threading.Thread(target=self._loop, name="config-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop looking (a check in progress ends first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:  # a bug must not end the watch; the next look may work
                log.exception("config check failed")
