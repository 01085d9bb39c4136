"""What a poll records, from tables: its outcome and the source's state row, typed."""

from __future__ import annotations

import random
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.config import parse_config
from aggregator.models import Counts, Status, WriteFailure
from aggregator.poll.outcome import Answer, Attempt, Validators, judge, poll_record, rebuild_outcome
from aggregator.poll.policy import LOCAL_FAULT_RETRY, Hints, Policy
from aggregator.store.records import KEEP, SourceState, SourceStateUpdate
from aggregator.store.schema import sources_table

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
POLICY = Policy(
    interval=1800, floor=300, ceiling=86400, jitter=0.0, backoff_cap=6 * 3600, max_failures=3
)
SOURCE = parse_config(
    'sources: [{url: "https://example.com/feed.xml", categories: [A], name: s}]'
).sources[0]
ERRORING = SourceState(
    name="s",
    etag='"e0"',
    last_modified=None,
    body_hash="b0",
    render_key="r0",
    status=Status.ERRORING,
    failures=1,
    next_poll_at=None,
    config_hash=SOURCE.fingerprint(),
)
PAUSING = replace(ERRORING, failures=2)  # one more failure pauses it (max_failures 3)
OK_ANSWER = Answer(http_status=200, bytes=1234, moved_to=None)
MOVED = Answer(http_status=200, bytes=10, moved_to="https://new.example.com/feed.xml")
VALIDATORS = Validators(
    etag='"e1"', last_modified="Fri, 02 Jan 2026 03:00:00 GMT", body_hash="b1", render_key="r1"
)
DISK_FULL = WriteFailure("A/a.md", "cannot write A/a.md: No space left on device", local=True)
BAD_NAME = WriteFailure("A/b.md", "cannot write A/b.md: File name too long", local=False)
AFTER = NOW + timedelta(seconds=1800)

# What every poll that reached a verdict on the source writes (a local fault excepted).
VERDICT = {
    "name": "s",
    "url": SOURCE.url,
    "last_polled_at": NOW,
    "config_hash": SOURCE.fingerprint(),
}


def backed_off(error: str) -> dict[str, object]:
    """The state row after a second failure in a row, the server having answered 200."""
    return {
        **VERDICT,
        "last_error": error,
        "status": Status.ERRORING,
        "failures": 2,
        "next_poll_at": NOW + timedelta(seconds=3600),
        "interval": 3600.0,
        "reason": None,
        "last_http_status": 200,
        "moved_to": None,
    }


CASES = {
    "parsed and stored: everything it learnt": (
        ERRORING,
        Attempt(
            NOW,
            counts=Counts(new=2, unchanged=1, warnings=("odd date",)),
            answer=MOVED,
            hints=Hints(ttl=3600.0),
            feed_title="The feed",
            validators=VALIDATORS,
        ),
        {"error": None, "status": Status.OK, "warnings": ("odd date",), "local": False},
        {
            **VERDICT,
            "last_ok_at": NOW,
            "last_error": None,
            "status": Status.OK,
            "failures": 0,
            "next_poll_at": NOW + timedelta(seconds=3600),
            "interval": 3600.0,
            "reason": None,
            "last_http_status": 200,
            "moved_to": MOVED.moved_to,
            "etag": '"e1"',
            "last_modified": VALIDATORS.last_modified,
            "body_hash": "b1",
            "render_key": "r1",
            "title": "The feed",
            "feed_hint": 3600.0,
        },
    ),
    "not modified: the feed's title, hint and validators stay": (
        ERRORING,
        Attempt(NOW, answer=Answer(304, 0, None), not_modified=True, hints=Hints(ttl=60.0)),
        {"error": None, "status": Status.OK, "warnings": (), "local": False},
        {
            **VERDICT,
            "last_ok_at": NOW,
            "last_error": None,
            "status": Status.OK,
            "failures": 0,
            "next_poll_at": AFTER,
            "interval": 1800.0,
            "reason": None,
            "last_http_status": 304,
            "moved_to": None,
        },
    ),
    "fetch failed: no answer, the last success and validators stay": (
        ERRORING,
        Attempt(NOW, error="HTTP 500 from https://u:pw@example.com/f", http_status=500),
        {
            "error": "HTTP 500 from https://***@example.com/f",
            "status": Status.ERRORING,
            "warnings": (),
            "local": False,
        },
        {
            **VERDICT,
            "last_error": "HTTP 500 from https://***@example.com/f",
            "status": Status.ERRORING,
            "failures": 2,
            "next_poll_at": NOW + timedelta(seconds=3600),
            "interval": 3600.0,
            "reason": None,
            "last_http_status": 500,
        },
    ),
    "gone: not scheduled again": (
        ERRORING,
        Attempt(NOW, error="HTTP 410", http_status=410),
        {"error": "HTTP 410", "status": Status.GONE, "warnings": (), "local": False},
        {
            **VERDICT,
            "last_error": "HTTP 410",
            "status": Status.GONE,
            "failures": 2,
            "next_poll_at": None,
            "interval": None,
            "reason": "the server says the feed is gone (410)",
            "last_http_status": 410,
        },
    ),
    "unreadable document: the answer is recorded, not its validators": (
        ERRORING,
        Attempt(
            NOW,
            error="not a feed",
            answer=OK_ANSWER,
            hints=Hints(),
            validators=VALIDATORS,
        ),
        {"error": "not a feed", "status": Status.ERRORING, "warnings": (), "local": False},
        backed_off("not a feed"),
    ),
    "a file our full disk refused: the source keeps its state": (
        ERRORING,
        Attempt(
            NOW,
            counts=Counts(new=1, failed=1, write_failures=(DISK_FULL,)),
            answer=OK_ANSWER,
            feed_title="The feed",
            validators=VALIDATORS,
        ),
        {
            "error": DISK_FULL.message,
            "status": Status.ERRORING,
            "warnings": (f"write: {DISK_FULL.message}",),
            "local": True,
        },
        {
            "name": "s",
            "url": SOURCE.url,
            "last_polled_at": NOW,
            "next_poll_at": NOW + timedelta(seconds=LOCAL_FAULT_RETRY),
        },
    ),
    "never polled, our database refused its rows: stays new, no backoff": (
        None,
        Attempt(NOW, counts=Counts(new=3), fault="database error: disk full", answer=OK_ANSWER),
        {"error": "database error: disk full", "status": Status.NEW, "warnings": (), "local": True},
        {
            "name": "s",
            "url": SOURCE.url,
            "last_polled_at": NOW,
            "next_poll_at": NOW + timedelta(seconds=LOCAL_FAULT_RETRY),
        },
    ),
    "a file name refused: the source's failure, first failure is its error": (
        ERRORING,
        Attempt(
            NOW,
            counts=Counts(new=1, failed=1, write_failures=(BAD_NAME,)),
            answer=OK_ANSWER,
            validators=VALIDATORS,
        ),
        {
            "error": BAD_NAME.message,
            "status": Status.ERRORING,
            "warnings": (f"write: {BAD_NAME.message}",),
            "local": False,
        },
        backed_off(BAD_NAME.message),
    ),
    "nothing could be kept: a failure, and the third in a row pauses": (
        PAUSING,
        Attempt(
            NOW,
            counts=Counts(failed=3, warnings=("bad entry",) * 3),
            answer=OK_ANSWER,
            feed_title="The feed",
            hints=Hints(),
        ),
        {
            "error": "no entry could be kept (3 failed)",
            "status": Status.PAUSED,
            "warnings": ("bad entry",) * 3,
            "local": False,
        },
        {
            **VERDICT,
            "last_error": "no entry could be kept (3 failed)",
            "status": Status.PAUSED,
            "failures": 3,
            "next_poll_at": None,
            "interval": None,
            "reason": "paused after 3 failures in a row; last: no entry could be kept (3 failed)",
            "last_http_status": 200,
            "moved_to": None,
            "title": "The feed",
            "feed_hint": None,
        },
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_poll_record(
    case: tuple[SourceState | None, Attempt, dict[str, object], dict[str, object]],
) -> None:
    before, attempt, outcome_fields, columns = case
    record = poll_record(POLICY, SOURCE, before, attempt, rng=random.Random(1), duration=0.25)
    outcome = record.outcome
    assert outcome.error == outcome_fields["error"]
    assert outcome.status is outcome_fields["status"]
    assert outcome.warnings == outcome_fields["warnings"]
    assert outcome.local_fault is outcome_fields["local"]
    assert (outcome.source, outcome.url, outcome.duration) == ("s", SOURCE.url, 0.25)
    assert (outcome.new, outcome.failed) == (attempt.counts.new, attempt.counts.failed)
    assert outcome.next_poll_at == columns["next_poll_at"]
    assert record.started == NOW
    assert record.state.columns() == columns


def test_a_fault_of_the_index_beats_a_file_written_wrong() -> None:
    counts = Counts(new=1, failed=1, write_failures=(BAD_NAME,))
    assert judge(counts, None, "database error: disk full") == ("database error: disk full", True)
    assert judge(counts, "HTTP 500", None) == ("HTTP 500", False)  # the source failed first


def test_rebuild_outcome() -> None:
    counts = Counts(updated=2, unchanged=5, failed=1, write_failures=(DISK_FULL,))
    outcome = rebuild_outcome("s", counts, None)
    assert (outcome.updated, outcome.unchanged, outcome.failed) == (2, 5, 1)
    assert (outcome.error, outcome.local_fault) == (DISK_FULL.message, True)
    assert outcome.warnings == (f"write: {DISK_FULL.message}",)
    assert outcome.status is Status.OK and outcome.next_poll_at is None


def test_counts_add_up() -> None:
    parsed = Counts(failed=1, warnings=("skipped one",))
    stored = Counts(new=2, dropped=1, warnings=("kept a file",), write_failures=(BAD_NAME,))
    assert parsed + stored + Counts(dropped=4) == Counts(
        new=2,
        dropped=5,
        failed=1,
        warnings=("skipped one", "kept a file"),
        write_failures=(BAD_NAME,),
    )


def test_a_state_update_has_a_field_for_every_column_and_keeps_what_it_is_not_given() -> None:
    assert [f.name for f in fields(SourceStateUpdate)] == list(sources_table.c.keys())
    update = SourceStateUpdate(name="s", url="u", etag=None, status=Status.PAUSED)
    assert update.columns() == {"name": "s", "url": "u", "etag": None, "status": Status.PAUSED}
    assert update.last_ok_at is KEEP
    with pytest.raises(TypeError):
        SourceStateUpdate(name="s", url="u", e_tag=None)  # type: ignore[call-arg]  # the misspelling under test
