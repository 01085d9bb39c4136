"""The rows the store reads and writes, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.models import SourceOutcome


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One poll, ready to be written: its outcome, and the source's new state columns."""

    outcome: SourceOutcome
    started: datetime
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the pipeline needs to know of a source before polling it."""

    name: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    status: str  # models.Status value
    failures: int
    next_poll_at: datetime | None
    config_hash: str | None
    feed_hint: float | None = None  # the feed's own interval hint, kept across 304s


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """What the index knows of an entry, for the "what changed" decision."""

    id: int
    key: str
    uid: str
    path: str | None
    raw_hash: str | None
    file_hash: str | None
    render_key: str | None
    first_seen: datetime
    pruned: bool
    dropped_by: str | None


@dataclass(frozen=True, slots=True)
class EntryRow:
    """Everything written to the index for one entry."""

    source: str
    key: str
    alt_key: str
    uid: str
    path: str | None  # relative to posts_dir; None when a rule dropped it
    title: str
    link: str | None
    author: str
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    headimg: str
    summary: str
    body_html: str
    published: datetime | None
    updated: datetime | None
    date: datetime
    first_seen: datetime
    last_seen: datetime
    raw_json: str
    raw_hash: str
    file_hash: str | None  # None: no file (dropped by a rule)
    render_key: str
    dropped_by: str | None = None
    dropped_at: datetime | None = None
