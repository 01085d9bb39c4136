"""The leases of a one-shot pass (``aggregator poll``): the claim loop's, taken by name.

A ``poll`` beside a ``run`` on the same index must never poll a source the run holds,
nor the run one the pass holds: both take a source only through ``store/claims.py``'s
lease (``claim_named``, a compare-and-set on the rows). A pass does not lease all its
sources up front: a lease is as long as a poll may take (a crashed pass's sources come
back soon), and the last source of a large pass starts long after the first. So
sources are claimed a chunk at a time, in the order their polls start, when the first of
a chunk is about to be polled: one transaction per chunk, not per source.

Each lease ends with its poll's record (``Poller._record`` releases it in the same
transaction); one claimed but not recorded (a skip, an interrupted pass) is released by
``close``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from aggregator.store import Store, claims


class PassLeases:
    """Leases of a pass's sources, claimed a chunk at a time as their polls start.

    Args:
        store: the index.
        keys: the pass's sources, in the order their polls are submitted.
        lease: how long a claim holds its source.
        clock: the current UTC time.
        chunk: sources claimed per transaction (about the polls that start together).
    """

    def __init__(
        self,
        store: Store,
        keys: Sequence[str],
        lease: timedelta,
        clock: Callable[[], datetime],
        chunk: int,
    ) -> None:
        self.store = store
        self.lease = lease
        self.clock = clock
        self.chunk = max(1, chunk)
        self._keys = list(keys)
        self._next = 0  # the first key not claimed yet
        self._tokens: dict[str, str | None] = {}  # None: another claimer holds it
        self._recorded: set[str] = set()
        self._lock = threading.Lock()

    def take(self, key: str) -> str | None:
        """The lease of ``key`` (claiming the chunks up to it first); None: another
        claimer holds the source, and it must not be polled now."""
        with self._lock:
            while key not in self._tokens and self._next < len(self._keys):
                batch = self._keys[self._next : self._next + self.chunk]
                with self.store.transaction() as conn:
                    taken = claims.claim_named(conn, batch, self.clock(), self.lease)
                self._tokens.update({name: taken.get(name) for name in batch})
                self._next += len(batch)
            return self._tokens.get(key)

    def token(self, key: str) -> str | None:
        """The lease ``key`` holds, if claimed (for its record, which ends it)."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None:
                self._recorded.add(key)
            return token

    def close(self) -> None:
        """Release the leases claimed and not ended by a record (skips, polls never
        started); their sources are due again as they were."""
        with self._lock:
            left = {
                name: token
                for name, token in self._tokens.items()
                if token is not None and name not in self._recorded
            }
            self._recorded.update(left)
        if left:
            with self.store.transaction() as conn:
                claims.release_all(conn, left, done=False)
