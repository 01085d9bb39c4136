"""Scheduling decisions, with a fixed clock and a seeded random source (no sleeps)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aggregator.models import Status
from aggregator.poll.policy import (
    Hints,
    Policy,
    after_failure,
    after_success,
    feed_hints,
    with_jitter,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
POLICY = Policy(
    interval=1800, floor=300, ceiling=86400, jitter=0.1, backoff_cap=6 * 3600, max_failures=5
)


@pytest.mark.parametrize(
    ("interval", "hints", "expected"),
    [
        (None, Hints(), 1800),
        (600, Hints(), 600),
        (60, Hints(), 300),  # floor
        (10**6, Hints(), 86400),  # ceiling
        (600, Hints(ttl=3600), 3600),  # <ttl> is a lower bound
        (7200, Hints(ttl=3600), 7200),  # ...not an upper one
        (600, Hints(update_period=1800, max_age=900), 1800),
        (600, Hints(expires_in=5000), 5000),
        (600, Hints(max_age=10**7), 86400),
    ],
)
def test_after_success(interval: float | None, hints: Hints, expected: float) -> None:
    decision = after_success(POLICY, interval, hints)
    assert decision.status is Status.OK
    assert decision.failures == 0
    assert decision.delay == expected


def test_failures_back_off_exponentially_then_pause() -> None:
    delays = []
    failures = 0
    for _ in range(4):
        decision = after_failure(POLICY, 1800, failures, http_status=500, message="HTTP 500")
        assert decision.status is Status.ERRORING
        failures = decision.failures
        delays.append(decision.delay)
    assert delays == [1800, 3600, 7200, 14400]
    decision = after_failure(POLICY, 1800, failures, message="HTTP 500")
    assert decision.status is Status.PAUSED
    assert decision.delay is None
    assert decision.reason == "paused after 5 failures in a row; last: HTTP 500"


def test_backoff_is_capped() -> None:
    patient = replace(POLICY, max_failures=50)
    assert after_failure(patient, 1800, 6).delay == 6 * 3600
    assert after_failure(patient, 1800, 30).delay == 6 * 3600
    assert after_failure(patient, 1800, 6, retry_after=10 * 3600).delay == 10 * 3600
    assert after_failure(patient, 1800, 0, retry_after=10**7).delay == 86400  # ceiling


def test_retry_after_is_a_lower_bound() -> None:
    assert after_failure(POLICY, 1800, 0, http_status=429, retry_after=7200).delay == 7200
    assert after_failure(POLICY, 1800, 0, http_status=503, retry_after=5).delay == 1800


def test_410_is_gone_at_once() -> None:
    decision = after_failure(POLICY, 1800, 0, http_status=410)
    assert decision.status is Status.GONE
    assert decision.delay is None


def test_jitter_stays_within_bounds_and_is_reproducible() -> None:
    values = [with_jitter(1000, 0.1, random.Random(7)) for _ in range(3)]
    assert len(set(values)) == 1
    spread = [with_jitter(1000, 0.1, random.Random(seed)) for seed in range(200)]
    assert all(900 <= v <= 1100 for v in spread)
    assert max(spread) - min(spread) > 150
    assert with_jitter(1000, 0, random.Random(1)) == 1000


@pytest.mark.parametrize(
    ("ttl", "period", "frequency", "headers", "expected"),
    [
        ("60", None, None, {}, Hints(ttl=3600)),
        (" 5 ", None, None, {}, Hints(ttl=300)),
        ("0", None, None, {}, Hints()),
        ("soon", None, None, {}, Hints()),
        (None, "hourly", "2", {}, Hints(update_period=1800)),
        (None, "daily", None, {}, Hints(update_period=86400)),
        (None, "fortnightly", "1", {}, Hints()),
        (None, None, None, {"cache-control": "public, max-age=600"}, Hints(max_age=600)),
        (None, None, None, {"cache-control": "no-cache"}, Hints()),
        (
            None,
            None,
            None,
            {"expires": "Mon, 01 Jan 2024 11:00:00 GMT", "date": "Mon, 01 Jan 2024 10:00:00 GMT"},
            Hints(expires_in=3600),
        ),
        (None, None, None, {"expires": "0", "date": "Mon, 01 Jan 2024 10:00:00 GMT"}, Hints()),
    ],
)
def test_feed_hints(
    ttl: str | None,
    period: str | None,
    frequency: str | None,
    headers: dict[str, str],
    expected: Hints,
) -> None:
    assert feed_hints(ttl, period, frequency, headers) == expected
