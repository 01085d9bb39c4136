"""Pure scheduling decisions: when to poll a source next, and what state it is in.

No I/O and no clock: ``now`` and the random source are arguments, so tests fix both.

- A healthy source is polled every ``interval`` (its own or the global one), but never
  more often than the feed or the server ask: RSS ``<ttl>``, ``sy:updatePeriod`` /
  ``sy:updateFrequency``, ``Cache-Control: max-age`` and ``Expires`` are lower bounds.
- A failing source backs off exponentially from its interval, capped, and never sooner
  than a ``Retry-After`` says. After ``max_failures`` failures in a row it is paused.
- 410 Gone pauses a source at once, as gone.
- A fault of our own storage (full disk, read-only folder, damaged database) is not the
  source's: its state and failure count stay, and it is tried again soon, with no backoff.
- Every delay stays inside [floor, ceiling] and gets a little jitter, so sources
  configured together drift apart instead of arriving at a host all at once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from aggregator.models import Status

LOCAL_FAULT_RETRY = 300.0  # seconds: how soon a poll that our storage failed is tried again


@dataclass(frozen=True, slots=True)
class Policy:
    """The schedule's settings, in seconds.

    No defaults: every value comes from ``config.ScheduleSettings``, where the defaults are
    written once.
    """

    interval: float  # a source's delay when it sets none
    floor: float  # never more often than this
    ceiling: float  # never less often than this
    jitter: float  # ± this fraction of each delay
    backoff_cap: float  # longest delay after failures (before the ceiling)
    max_failures: int  # failures in a row that pause a source

    def clamp(self, seconds: float) -> float:
        """Keep a delay inside [floor, ceiling]."""
        return min(max(seconds, self.floor), self.ceiling)


@dataclass(frozen=True, slots=True)
class Hints:
    """How often the feed and the server say they change, in seconds (None: silent)."""

    ttl: float | None = None  # RSS <ttl> (minutes in the feed)
    update_period: float | None = None  # sy:updatePeriod / sy:updateFrequency
    max_age: float | None = None  # Cache-Control: max-age
    expires_in: float | None = None  # Expires, relative to the response's Date

    def lower_bound(self) -> float:
        """The shortest interval all hints allow (0 when there are none)."""
        values = [v for v in (self.ttl, self.update_period, self.max_age, self.expires_in) if v]
        return max(values, default=0.0)


@dataclass(frozen=True, slots=True)
class Decision:
    """A source's state after a poll."""

    status: Status
    failures: int  # consecutive failures
    delay: float | None  # seconds until the next poll, before jitter; None when not scheduled
    reason: str | None  # why it is paused or gone


_PERIODS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 604800.0,
    "monthly": 2592000.0,
    "yearly": 31536000.0,
}


def feed_hints(
    ttl: str | None,
    update_period: str | None,
    update_frequency: str | None,
    headers: Mapping[str, str] | None = None,
) -> Hints:
    """Read the interval hints from the feed's fields and the HTTP headers."""
    ttl_seconds = None
    if ttl and ttl.strip().isdigit():
        ttl_seconds = int(ttl.strip()) * 60.0 or None
    period_seconds = None
    if update_period and update_period.strip().lower() in _PERIODS:
        frequency = 1
        if update_frequency and update_frequency.strip().isdigit():
            frequency = max(1, int(update_frequency.strip()))
        period_seconds = _PERIODS[update_period.strip().lower()] / frequency
    headers = headers or {}
    return Hints(
        ttl=ttl_seconds,
        update_period=period_seconds,
        max_age=_max_age(headers.get("cache-control")),
        expires_in=_expires_in(headers.get("expires"), headers.get("date")),
    )


def _max_age(value: str | None) -> float | None:
    if not value:
        return None
    for part in value.split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "max-age" and number.strip().isdigit():
            return float(number.strip()) or None
    return None


def _expires_in(expires: str | None, date: str | None) -> float | None:
    if not expires or not date:
        return None
    try:
        seconds = (parsedate_to_datetime(expires) - parsedate_to_datetime(date)).total_seconds()
    except (TypeError, ValueError, IndexError):
        return None
    return seconds if seconds > 0 else None


def after_success(policy: Policy, interval: float | None, hints: Hints) -> Decision:
    """The decision after a successful poll (new content, unchanged, or 304)."""
    base = interval or policy.interval
    return Decision(Status.OK, 0, policy.clamp(max(base, hints.lower_bound())), None)


def after_failure(
    policy: Policy,
    interval: float | None,
    failures_before: int,
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
    message: str = "",
) -> Decision:
    """The decision after a failed poll."""
    failures = failures_before + 1
    if http_status == 410:
        return Decision(Status.GONE, failures, None, "the server says the feed is gone (410)")
    if failures >= policy.max_failures:
        return Decision(
            Status.PAUSED,
            failures,
            None,
            f"paused after {failures} failures in a row"
            + (f"; last: {message}" if message else ""),
        )
    base = interval or policy.interval
    backoff = min(base * 2 ** (failures - 1), max(policy.backoff_cap, base))
    return Decision(Status.ERRORING, failures, policy.clamp(max(backoff, retry_after or 0.0)), None)


def after_local_fault(
    policy: Policy, interval: float | None, status: Status, failures: int
) -> Decision:
    """The decision after a poll that our own storage failed, not the source.

    A full posts disk once counted against every source polled meanwhile, so they backed
    off and ended paused long after space came back. Now nothing about the source
    changes but its next poll: soon (its interval, at most ``LOCAL_FAULT_RETRY``), so
    that it is written as soon as the storage is back.
    """
    base = interval or policy.interval
    return Decision(status, failures, policy.clamp(min(base, LOCAL_FAULT_RETRY)), None)


def with_jitter(delay: float, jitter: float, rng: random.Random) -> float:
    """Spread a delay by ± ``jitter`` of itself."""
    return delay * (1.0 + rng.uniform(-jitter, jitter)) if jitter else delay
