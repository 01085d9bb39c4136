"""What a poll did, made into what is recorded: its outcome and the source's new state.

Pure: the policy's verdict, the outcome and the state row are made from typed values,
with the random source (jitter) and the poll's duration as arguments, so a poll's
result is tested from tables (tests/test_outcome.py). The pipeline gathers an
``Attempt`` as the poll goes; ``poll_record`` turns it into one frozen ``PollRecord``
that the store writes as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

from aggregator.config import SourceConfig
from aggregator.models import Changes, Counts, SourceOutcome, Status
from aggregator.poll.policy import (
    Decision,
    Hints,
    Policy,
    after_failure,
    after_local_fault,
    after_success,
    with_jitter,
)
from aggregator.redact import redact
from aggregator.store.records import KEEP, PollRecord, SourceState, SourceStateUpdate


@dataclass(frozen=True, slots=True)
class Validators:
    """What the next conditional GET sends, from the last body fully processed."""

    etag: str | None
    last_modified: str | None
    #: Of the body with the render key: an unchanged body under changed settings is read.
    body_hash: str
    #: The render key it was processed with (its validators apply under that key only).
    render_key: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server answered (absent when the fetch failed before an answer)."""

    http_status: int
    bytes: int  # the body's size as received
    moved_to: str | None  # where a 301/308 pointed


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one poll of a source did, before the schedule's verdict on it."""

    #: When it started (the state's last_polled_at; retention's "now").
    started: datetime
    #: What became of the entries (the document's own problems included).
    counts: Counts = field(default_factory=Counts)
    #: Why the source failed (fetch, parse, or the index refusing its rows), if it did.
    error: str | None = None
    #: Our storage's failure (full disk, damaged database), not the source's.
    fault: str | None = None
    #: The server's answer, when there was one.
    answer: Answer | None = None
    #: The HTTP status of a failed fetch (an answer that was an error).
    http_status: int | None = None
    #: Seconds a 429/503 asked to wait.
    retry_after: float | None = None
    #: 304, or a 200 whose body had not changed: nothing was parsed.
    not_modified: bool = False
    #: How often the feed and the server say it changes.
    hints: Hints | None = None
    #: The feed's own title, when the document was parsed.
    feed_title: str | None = None
    #: For the next conditional GET, when the document was processed.
    validators: Validators | None = None


def judge(counts: Counts, error: str | None, fault: str | None) -> tuple[str | None, bool]:
    """The source's error, and whether it is our storage's fault (``local``).

    A failed article write, or keeping nothing at all, fails the source. A fault of our
    own storage fails the poll too, marked local so that the source is not blamed.
    """
    if fault is None:
        fault = next((f.message for f in counts.write_failures if f.local), None)
    if error is None and fault is not None:
        return fault, True
    if error is None and counts.write_failures:
        error = counts.write_failures[0].message
    if error is None and counts.failed and not counts.kept:
        error = f"no entry could be kept ({counts.failed} failed)"
    return error, False


class _Counted(TypedDict):
    """The fields of a SourceOutcome that its counts fill."""

    new: int
    updated: int
    unchanged: int
    failed: int
    dropped: int
    warnings: tuple[str, ...]
    changes: Changes


def _counted(counts: Counts) -> _Counted:
    return _Counted(
        new=counts.new,
        updated=counts.updated,
        unchanged=counts.unchanged,
        failed=counts.failed,
        dropped=counts.dropped,
        # As shown: entry problems, then the files not written.
        warnings=counts.warnings + tuple(f"write: {f.message}" for f in counts.write_failures),
        changes=counts.changes,
    )


def rebuild_outcome(source: str, counts: Counts, error: str | None) -> SourceOutcome:
    """The outcome of rebuilding one source's articles."""
    error, local = judge(counts, error, None)
    return SourceOutcome(source=source, error=error, local_fault=local, **_counted(counts))


def poll_record(
    policy: Policy,
    source: SourceConfig,
    state: SourceState | None,
    attempt: Attempt,
    *,
    rng: random.Random,
    duration: float,
) -> PollRecord:
    """Decide the source's next state; the poll and the state to record.

    Args:
        policy: the schedule's settings.
        source: the source polled.
        state: its state before the poll (None: never polled).
        attempt: what the poll did.
        rng: the random source for jitter.
        duration: seconds from the fetch to now.
    """
    # Error texts quote the URL (urllib3's too): stored, shown and logged redacted.
    error, local = judge(
        attempt.counts, redact(attempt.error) if attempt.error else None, attempt.fault
    )
    decision = _decide_state(policy, source, state, attempt, error, local)
    next_poll = None
    if decision.delay is not None:
        delay = with_jitter(decision.delay, policy.jitter, rng)
        next_poll = attempt.started + timedelta(seconds=policy.clamp(delay))
    answer = attempt.answer
    outcome = SourceOutcome(
        source=source.key,
        error=error,
        **_counted(attempt.counts),
        url=source.url,
        http_status=answer.http_status if answer else attempt.http_status,
        bytes=answer.bytes if answer else 0,
        duration=duration,
        not_modified=attempt.not_modified,
        moved_to=answer.moved_to if answer else None,
        status=decision.status,
        next_poll_at=next_poll,
        local_fault=local,
    )
    return PollRecord(outcome, attempt.started, _state_update(source, attempt, outcome, decision))


def _decide_state(
    policy: Policy,
    source: SourceConfig,
    state: SourceState | None,
    attempt: Attempt,
    error: str | None,
    local: bool,
) -> Decision:
    failures_before = state.failures if state else 0
    if local:
        status_before = state.status if state else Status.NEW
        return after_local_fault(policy, source.interval, status_before, failures_before)
    if error is None:
        return after_success(policy, source.interval, attempt.hints or Hints())
    return after_failure(
        policy,
        source.interval,
        failures_before,
        http_status=attempt.http_status,
        retry_after=attempt.retry_after,
        message=error,
    )


def _state_update(
    source: SourceConfig, attempt: Attempt, outcome: SourceOutcome, decision: Decision
) -> SourceStateUpdate:
    """The source's state row after a poll; what the poll did not learn stays as stored."""
    started = attempt.started
    if outcome.local_fault:
        # Only when it runs next: its status, failures and validators stay as they
        # were, so the next poll fetches and writes everything again.
        return SourceStateUpdate(
            name=source.key,
            url=source.url,
            last_polled_at=started,
            next_poll_at=outcome.next_poll_at,
        )
    validators = attempt.validators if outcome.ok else None
    parsed = attempt.feed_title is not None  # the document was parsed: its hints are fresh
    hints = attempt.hints
    return SourceStateUpdate(
        name=source.key,
        url=source.url,
        last_polled_at=started,
        last_error=outcome.error,
        status=decision.status,
        failures=decision.failures,
        next_poll_at=outcome.next_poll_at,
        interval=decision.delay,
        reason=decision.reason,
        config_hash=source.fingerprint(),
        last_http_status=outcome.http_status,
        moved_to=outcome.moved_to if attempt.answer is not None else KEEP,
        last_ok_at=started if outcome.ok else KEEP,
        etag=validators.etag if validators else KEEP,
        last_modified=validators.last_modified if validators else KEEP,
        body_hash=validators.body_hash if validators else KEEP,
        render_key=validators.render_key if validators else KEEP,
        title=attempt.feed_title if parsed else KEEP,
        feed_hint=(
            (max(hints.ttl or 0.0, hints.update_period or 0.0) or None)
            if parsed and hints is not None
            else KEEP
        ),
    )
