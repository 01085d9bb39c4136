"""The package's data, in two shapes: what a feed said, and what we keep.

All times are timezone-aware UTC. Everything here is frozen: stages hand values on,
they never mutate them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar


def _time_to_json(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time_from_json(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value)).astimezone(UTC)


class Status(StrEnum):
    """The state a source is in, as the dashboard shows it."""

    NEW = "new"  # never polled
    OK = "ok"
    ERRORING = "erroring"  # failed lately, backing off, still scheduled
    PAUSED = "paused"  # too many failures in a row: waits for a refresh or a config change
    GONE = "gone"  # 410: waits for a refresh or a config change


@dataclass(frozen=True, slots=True)
class Person:
    """An author as a feed names them (RSS author/dc:creator, Atom author, JSON Feed)."""

    name: str  # '' when the feed gave only an email or a URL
    email: str | None = None
    url: str | None = None

    @property
    def label(self) -> str:
        """What to show for them: the name, else the email, else the URL."""
        return self.name.strip() or (self.email or "").strip() or (self.url or "").strip()


def byline(authors: Sequence[Person]) -> str:
    """The entry's authors as one plain line ("Jane Doe, John Roe"); '' when none."""
    labels = (" ".join(p.label.split()) for p in authors)  # no line breaks, no runs
    return ", ".join(dict.fromkeys(label for label in labels if label))


# The validator's MIME type pattern (W3C feedvalidator, validators.mime_re).
_MIME_TYPE = re.compile(
    r'^[^\s()<>,;:\\"/\[\]?=]+/[^\s()<>,;:\\"/\[\]?=]+'
    r'(\s*;\s*[^\s()<>,;:\\"/\[\]?=]+=("(\\"|[^"])*"|[^\s()<>,;:\\"/\[\]?=]+))*$'
)
# Media types by file extension, for files whose feed gave no usable type. A table of our
# own, not ``mimetypes``: that module reads the system's mime.types files (I/O, and other
# answers on another machine, e.g. audio/x-m4a or audio/mp4) and its built-in table
# changes between Python versions; a guess must be the same everywhere.
_BY_EXTENSION = {
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "m4b": "audio/mp4",
    "aac": "audio/aac",
    "oga": "audio/ogg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "weba": "audio/webm",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "bmp": "image/bmp",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "epub": "application/epub+zip",
}


def guess_media_type(url: str) -> str:
    """The media type a URL's file extension says (its query and fragment ignored); ''
    when it says none we know."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return ""
    return _BY_EXTENSION.get(name.rsplit(".", 1)[1].lower(), "")


@dataclass(frozen=True, slots=True)
class Enclosure:
    """A file attached to an entry (a podcast's audio, a video, an image)."""

    url: str  # absolute
    type: str = ""  # the media type as declared, '' when none
    length: int | None = None  # bytes, as declared (often 0 or wrong; never trusted)

    @property
    def media_type(self) -> str:
        """The declared type when it is a media type, else the one its URL's extension
        says, else ''."""
        kind = self.type
        if kind and kind.isascii() and kind.isprintable() and _MIME_TYPE.match(kind):
            return kind
        return guess_media_type(self.url)


T = TypeVar("T", Person, Enclosure)


def list_to_json(values: Sequence[Person | Enclosure]) -> str | None:
    """The stored form of authors or enclosures (as in ``ParsedEntry.to_json``); None
    when there are none."""
    if not values:
        return None
    return json.dumps([asdict(v) for v in values], ensure_ascii=False, sort_keys=True)


def list_from_json(kind: type[T], text: str | None) -> tuple[T, ...]:
    """Inverse of ``list_to_json``, for ``kind`` Person or Enclosure (None or '': none)."""
    return tuple(kind(**v) for v in json.loads(text)) if text else ()


# Fields most entries leave empty: left out of the stored JSON while they are.
_OPTIONAL = ("authors", "enclosures", "content_base", "summary_base")


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One entry as the feed gave it, before any cleaning (the "raw original")."""

    guid: str | None  # the feed's own id (RSS guid, Atom id), if any
    link: str | None  # the entry's permalink, absolute when the feed allowed it
    title: str  # plain text, entities decoded
    content_html: str  # the fullest body the feed offers, as HTML (plain text is escaped)
    summary_html: str  # the feed's summary/description as HTML, may equal the content
    published: datetime | None  # UTC
    updated: datetime | None  # UTC
    authors: tuple[Person, ...] = ()  # the entry's own authors, in the feed's order
    tags: tuple[str, ...] = ()  # the entry's own categories/tags
    images: tuple[str, ...] = ()  # media:thumbnail, media:content, image enclosures, in order
    enclosures: tuple[Enclosure, ...] = ()  # every enclosure, images included, in order
    #: The base URL of relative references in ``content_html`` (xml:base, else the
    #: document's URL), and in ``summary_html``; None: resolve against the entry link.
    content_base: str | None = None
    summary_base: str | None = None

    def to_json(self) -> str:
        """Serialise for the store; ``from_json`` gives back an equal value."""
        data = asdict(self)
        data["published"] = _time_to_json(self.published)
        data["updated"] = _time_to_json(self.updated)
        for name in _OPTIONAL:
            if not data[name]:
                del data[name]
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ParsedEntry:
        """Inverse of ``to_json``; also reads what older versions stored."""
        data = json.loads(text)
        data["published"] = _time_from_json(data["published"])
        data["updated"] = _time_from_json(data["updated"])
        data["tags"] = tuple(data["tags"])
        data["images"] = tuple(data["images"])
        old_author = data.pop("author", None)  # before authors: one name, as a string
        authors = data.get("authors")
        if authors is not None:
            data["authors"] = tuple(Person(**a) for a in authors)
        elif old_author:
            data["authors"] = (Person(str(old_author)),)
        data["enclosures"] = tuple(Enclosure(**e) for e in data.get("enclosures", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A whole feed document as parsed."""

    title: str  # the feed's own title
    link: str | None  # the site the feed belongs to
    entries: tuple[ParsedEntry, ...]
    skipped: tuple[str, ...] = ()  # one message per entry that could not be read
    warning: str | None = None  # feedparser's complaint about a feed it could still read
    ttl: str | None = None  # RSS <ttl>, minutes, as written
    update_period: str | None = None  # sy:updatePeriod
    update_frequency: str | None = None  # sy:updateFrequency
    #: Set when nothing declared fitted and the bytes are not UTF-8: the encoding is a
    #: guess, and this says which (a warning on the poll).
    encoding_warning: str | None = None


@dataclass(frozen=True, slots=True)
class Prerendered:
    """An article's file text, rendered where it was converted (a worker process, beside
    the parsing) for the id and date a new entry gets: the decision uses it when it
    gives the entry just those, under the same settings, and renders afresh otherwise."""

    uid: str
    date: datetime
    render_key: str  # the render settings it was made under (``ResolvedSource``)
    text: str


@dataclass(frozen=True, slots=True)
class Article:
    """An entry converted for keeping: cleaned, with its front matter, ready to write."""

    key: str  # identity inside its source (guid, else link, else content hash)
    alt_key: str  # identity used when the feed repeats ``key`` for different items
    raw_json: str  # ParsedEntry.to_json(), kept so a rebuild can re-clean
    raw_hash: str  # hash of raw_json: "did the entry change upstream?"
    title: str
    link: str | None
    categories: tuple[str, ...]  # section › site › feed
    author: str  # the site's name (the seed's `author`)
    published: datetime | None  # UTC; None when the feed gave no date at all
    updated: datetime | None  # UTC
    headimg: str  # the best image URL, '' when there is none
    tags: tuple[str, ...]
    summary: str  # plain-text summary (for republishing)
    body_html: str  # cleaned, sanitised HTML (no Hexo escaping)
    authors: tuple[Person, ...] = ()  # the entry's own authors (its byline), in order
    enclosures: tuple[Enclosure, ...] = ()  # every enclosure, as the feed gave it
    body_from: str = "feed"  # where ``body_html`` came from: "feed", or "page" (full text)
    body_note: str | None = None  # why the page's full text was not used, when it was not
    #: Its file's text, if the worker rendered it (not part of what the entry is).
    prerendered: Prerendered | None = field(default=None, compare=False, repr=False)

    @property
    def byline(self) -> str:
        """The entry's own authors as one line; '' when the feed named none."""
        return byline(self.authors)


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """An article file that could not be written (its entry is not indexed this time)."""

    #: The file, relative to the posts folder.
    path: str
    #: Why, as the store said it.
    message: str
    #: True when our own storage failed (full disk, read-only...), not the source.
    local: bool


@dataclass(frozen=True, slots=True)
class EntryChange:
    """A new or updated entry, as the webhooks tell it (``hooks.py``)."""

    kind: str  # "new" or "updated"
    source: str
    uid: str
    title: str
    link: str | None
    authors: tuple[Person, ...]
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    date: datetime
    path: str | None  # its article file, relative to the posts folder


@dataclass(frozen=True, slots=True)
class Changes:
    """What a poll or rebuild changed: the news the hooks pass on to the site.

    Parts add up (a pass is the sum of its polls).
    """

    #: Article files written (created or rewritten), relative to the posts folder.
    written: tuple[str, ...] = ()
    #: Article files deleted (a rule now drops the entry, or retention pruned it).
    deleted: tuple[str, ...] = ()
    #: The entries that are new or updated upstream (empty for a rebuild).
    entries: tuple[EntryChange, ...] = ()

    def __add__(self, other: Changes) -> Changes:
        return Changes(
            self.written + other.written,
            self.deleted + other.deleted,
            self.entries + other.entries,
        )

    @property
    def files(self) -> tuple[str, ...]:
        """Every file written or deleted, once each, in order."""
        return tuple(dict.fromkeys(self.written + self.deleted))


@dataclass(frozen=True, slots=True)
class Counts:
    """What became of a source's entries in one poll or rebuild; parts add up."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    dropped: int = 0  # not kept: rules, retention, pruned
    failed: int = 0  # unreadable, unconvertible or unwritable
    #: Problems with single entries, in the order met (the poll still succeeds).
    warnings: tuple[str, ...] = ()
    #: The article files that could not be written, in the order tried.
    write_failures: tuple[WriteFailure, ...] = ()
    #: The files and entries changed (for the hooks).
    changes: Changes = Changes()

    def __add__(self, other: Counts) -> Counts:
        # Field by field (numbers add, tuples concatenate): a new field cannot be forgotten.
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def kept(self) -> int:
        """Entries that are in the store after this poll (new, updated or unchanged)."""
        return self.new + self.updated + self.unchanged


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """What one poll of one source did: the summary line, the poll history, the state."""

    source: str  # the source's name
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0  # entries skipped as unreadable or unwritable
    dropped: int = 0  # entries not kept (retention)
    error: str | None = None  # why the whole source failed, if it did
    warnings: tuple[str, ...] = field(default_factory=tuple)
    url: str = ""  # what was fetched
    http_status: int | None = None  # None for files and for failures before an answer
    bytes: int = 0  # body size as received
    duration: float = 0.0  # seconds, fetch to commit
    not_modified: bool = False  # 304, or a 200 whose body had not changed: nothing parsed
    moved_to: str | None = None  # where a 301/308 pointed: the config should say so
    status: Status = Status.OK  # the source's state afterwards
    next_poll_at: datetime | None = None  # when ``aggregator run`` polls it next
    skipped: bool = False  # not polled at all (paused or gone, or held)
    held: bool = False  # skipped: another poller's lease holds it (``aggregator poll``)
    local_fault: bool = False  # the error is our storage's (full disk...), not the source's
    changes: Changes = Changes()  # the files and entries it changed (for the hooks)

    @property
    def ok(self) -> bool:
        """True when the source itself was read (entries may still have failed)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class PublishedEntry:
    """An entry as the republished feeds show it (read back from the store)."""

    uid: str  # permanent id
    source: str
    title: str
    link: str | None
    author: str  # the site's name: the author of an entry whose feed named none
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    headimg: str
    summary: str  # plain text
    body_html: str  # cleaned, sanitised HTML
    published: datetime | None
    updated: datetime | None
    date: datetime  # published, else updated, else first seen
    authors: tuple[Person, ...] = ()  # the entry's own authors
    enclosures: tuple[Enclosure, ...] = ()  # its enclosures, as the feed gave them


@dataclass(frozen=True, slots=True)
class RebuildStatus:
    """How the latest rebuild went: asked for (from the dashboard of any replica, or by
    ``aggregator rebuild``), running, or ended; read from its job row.

    Here, not beside the runner, so the web layer can show it without importing a poll
    module.
    """

    requested_at: datetime | None = None  # None: no rebuild was ever asked for
    started_at: datetime | None = None  # None: waiting for a process with pollers
    finished_at: datetime | None = None  # None while it runs
    sources: int = 0  # sources rebuilt
    updated: int = 0  # articles rewritten
    failed: tuple[str, ...] = ()  # sources whose entries could not all be written back
    error: str | None = None  # why the rebuild itself stopped, if it did
    runner: str | None = None  # the host and process that ran it

    @property
    def waiting(self) -> bool:
        """True between the request and the start (no process with pollers took it yet)."""
        return self.requested_at is not None and self.started_at is None

    @property
    def running(self) -> bool:
        """True between the start and the end of a rebuild."""
        return self.started_at is not None and self.finished_at is None
