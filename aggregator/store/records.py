"""The rows the store reads and writes, as frozen dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import TypeAlias, TypeVar

from aggregator.models import Enclosure, Person, SourceOutcome, Status

T = TypeVar("T")


class Keep(Enum):
    """A column an update leaves as it is stored (explicit: not a forgotten key)."""

    KEEP = "keep"


KEEP = Keep.KEEP
Update: TypeAlias = T | Keep  # a column's new value, or KEEP


@dataclass(frozen=True, slots=True)
class SourceStateUpdate:
    """A source's state row as a poll (or the admin) leaves it; ``KEEP``: as stored.

    Every column of ``schema.sources_table`` is a field, so a misspelt column is a type
    error, and a column left alone says so.
    """

    #: The source's name (the row's key).
    name: str
    #: What was fetched (the row needs one, even when created by the admin).
    url: str
    #: The feed's own title, as last parsed.
    title: Update[str | None] = KEEP
    last_polled_at: Update[datetime | None] = KEEP
    last_ok_at: Update[datetime | None] = KEEP
    last_error: Update[str | None] = KEEP
    #: The validators of the last body fully processed (for the next conditional GET).
    etag: Update[str | None] = KEEP
    last_modified: Update[str | None] = KEEP
    body_hash: Update[str | None] = KEEP
    #: The render key the last body was processed with: under another (a new version,
    #: changed settings), the validators do not apply and the body is read again.
    render_key: Update[str | None] = KEEP
    status: Update[Status] = KEEP
    #: Failures in a row.
    failures: Update[int] = KEEP
    next_poll_at: Update[datetime | None] = KEEP
    #: The delay last chosen, seconds.
    interval: Update[float | None] = KEEP
    #: Where the last permanent redirect pointed.
    moved_to: Update[str | None] = KEEP
    #: Why it is paused or gone.
    reason: Update[str | None] = KEEP
    #: The source's settings when last polled (``SourceConfig.fingerprint``).
    config_hash: Update[str | None] = KEEP
    last_http_status: Update[int | None] = KEEP
    #: The feed's <ttl>/sy: interval, seconds, as last parsed.
    feed_hint: Update[float | None] = KEEP
    #: The claim loop's lease (``store/claims.py``): until when, and whose.
    lease_until: Update[datetime | None] = KEEP
    lease_token: Update[str | None] = KEEP
    #: Why a paused or gone source is claimable: "manual" (a refresh) or "config".
    wake: Update[str | None] = KEEP
    #: The source as configured: written by ``Catalog.sync_sources``, never by a poll.
    settings: Update[str | None] = KEEP
    fingerprint: Update[str | None] = KEEP
    enabled: Update[bool | None] = KEEP
    category_path: Update[str | None] = KEEP
    host: Update[str | None] = KEEP
    added_at: Update[datetime | None] = KEEP
    removed_at: Update[datetime | None] = KEEP
    #: The overview's columns, also synced: config position (None: not in the config),
    #: the category label, the redacted URL, and the lowercased search text.
    position: Update[int | None] = KEEP
    label: Update[str | None] = KEEP
    url_shown: Update[str | None] = KEEP
    search: Update[str | None] = KEEP

    def columns(self) -> dict[str, object]:
        """The columns to write, by name (those left as ``KEEP`` are not among them)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not KEEP}


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One poll, ready to be written: its outcome, and the source's new state."""

    outcome: SourceOutcome
    started: datetime
    state: SourceStateUpdate


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the pipeline needs to know of a source before polling it."""

    name: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    render_key: str | None
    status: Status
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
    #: Its recorded alt key (key assignment reads it: ``convert.assign_keys``).
    alt_key: str | None = None


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
    authors: tuple[Person, ...] = ()  # the entry's own
    enclosures: tuple[Enclosure, ...] = ()


@dataclass(frozen=True, slots=True)
class FolderContents:
    """What is in a source's folder, as far as choosing a new file's name needs to know."""

    #: entry_id → path of the article files that no index row points at (a killed run's).
    orphans: Mapping[str, str]
    #: The folds (``convert.fold_path``) of every file and folder in it that no index
    #: row points at (ours left by a killed run, or someone else's).
    folds: frozenset[str]


@dataclass(frozen=True, slots=True)
class HookRun:
    """One run of an ``on_change`` command, or one webhook delivery (all its attempts)."""

    #: "command", "webhook", or "export" (an article the exporter could not put at its
    #: path, which is ``target``).
    kind: str
    target: str  # the command as written, or the webhook's URL redacted
    started_at: datetime
    duration: float  # seconds, all attempts included
    ok: bool
    exit_code: int | None = None  # a command's exit status; a webhook's last HTTP status
    attempts: int = 1
    files: int = 0  # files changed (command), entries sent (webhook)
    error: str | None = None  # why it failed: timed out, could not start, refused...
    output: str | None = None  # the command's output (stdout and stderr), its last bytes


@dataclass(frozen=True, slots=True)
class FeedVersion:
    """The newest change to a feed's entries (``Queries.feed_version``): the same in every
    process that reads the index, so the validators made from it are too."""

    seq: int  # in the store's change sequence; 0: no entry was ever written to it
    changed_at: datetime | None  # when; None with seq 0
