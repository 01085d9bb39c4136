"""Failed admin logins, counted per client and in all, to slow down guessing the secret.

In memory, per process: behind a reverse proxy every client has the proxy's address,
and then the per-client limit is a second global one. The global limit caps guessing
from many addresses at once, at the price that such an attack also keeps the admin out
until it stops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    """A sliding window of failed logins.

    Args:
        per_client: failures one client may make in ``window`` seconds.
        overall: failures all clients together may make in ``window`` seconds.
        window: seconds.
        clock: monotonic seconds (tests pass their own, so nothing waits).
    """

    def __init__(
        self,
        per_client: int = 5,
        overall: int = 30,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.clock = clock
        self._clients: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again; None: it may try now."""
        with self._lock:
            now = self.clock()
            self._forget(now)
            # Blocked until the oldest failure that keeps a count at its limit expires.
            waits = [
                failures[len(failures) - limit] + self.window - now
                for failures, limit in (
                    (self._all, self.overall),
                    (self._clients.get(client, deque()), self.per_client),
                )
                if len(failures) >= limit
            ]
            return max(waits) if waits else None

    def failed(self, client: str) -> None:
        """Count a failed login of ``client``."""
        with self._lock:
            now = self.clock()
            self._forget(now)
            self._clients.setdefault(client, deque()).append(now)
            self._all.append(now)

    def _forget(self, now: float) -> None:
        """Drop failures older than the window, and clients with none left (so memory is
        bounded by the failures the window allows)."""
        horizon = now - self.window
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for client in list(self._clients):
            failures = self._clients[client]
            while failures and failures[0] <= horizon:
                failures.popleft()
            if not failures:
                del self._clients[client]
