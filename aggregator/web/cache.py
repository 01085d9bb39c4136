"""A bounded cache of rendered feeds (by count and by bytes), least recently used out.

Each value remembers the feed's own version (``Queries.feed_version``: the newest change
among its entries) it was rendered at, and when that was last checked: a feed is checked
again at most once a second, and at once after this process wrote entries. A new entry in
one category leaves the rendered feeds of the others, and their validators, as they were.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from aggregator.store.records import FeedVersion

VERSION_RECHECK = 1.0  # seconds a feed's version is trusted without reading it again


def content_etag(key: tuple[object, ...], version: FeedVersion, renderer: str) -> str:
    """A strong ETag made from what the bytes are made from, not from the bytes.

    ``key`` holds the configuration's fingerprint (titles, rules, render settings), the
    feed, its format, the query and the base URL; ``version`` the feed's entries;
    ``renderer`` our version. Two processes serving one index give the same tag.
    """
    made_from = repr((renderer, key, version.seq)).encode("utf-8")
    return '"' + hashlib.sha1(made_from).hexdigest()[:24] + '"'


@dataclass
class Rendered:
    """One rendered feed document and its HTTP validators."""

    body: bytes
    content_type: str
    last_modified: datetime
    version: FeedVersion  # the feed's version it was rendered at
    etag: str = ""
    checked: float = 0.0  # monotonic time the version was last found current
    checked_changes: int = -1  # the store's count of its own changes then
    _gzipped: bytes | None = field(default=None, repr=False)
    # The answer's headers, made once: (plain, gzip); set by the feeds view.
    headers: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None = None
    # A full answer's headers (with the body's type and length), made once for each form
    # (False: plain, True: gzip); set by the feeds view.
    answers: dict[bool, list[tuple[str, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = '"' + hashlib.sha1(self.body).hexdigest()[:24] + '"'
        self.http_date = format_datetime(self.last_modified, usegmt=True)

    def gzipped(self) -> bytes:
        """The body gzip-compressed (computed once)."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped

    @property
    def size(self) -> int:
        """Bytes held, for the cache's budget."""
        return len(self.body) + len(self._gzipped or b"")

    def trusted(self, now: float, changes: int) -> bool:
        """True when its version was checked under a second ago, and this process has
        written no entry since."""
        return changes == self.checked_changes and now - self.checked < VERSION_RECHECK

    def confirm(self, now: float, changes: int) -> None:
        """Note that its version was found current (at ``changes`` of the store's own)."""
        self.checked, self.checked_changes = now, changes


class FeedCache:
    """Rendered feeds by request key, bounded by ``max_entries`` and ``max_bytes``."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[object, ...], Rendered] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[object, ...]) -> Rendered | None:
        """The cached feed under ``key``, whatever its version (the caller checks it)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def count(self, hit: bool) -> None:
        """Count a request served from the cache, or not."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def put(self, key: tuple[object, ...], item: Rendered) -> None:
        """Keep a rendered feed, dropping the least recently used over budget."""
        if self.max_entries == 0 or item.size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._items[key] = item
            self._bytes += item.size
            while self._items and (
                len(self._items) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.size

    def grew(self, key: tuple[object, ...], item: Rendered, before: int) -> None:
        """Account for an item whose gzip form was added after it was put."""
        with self._lock:
            if self._items.get(key) is item:  # only while it is still the cached one
                self._bytes += item.size - before

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes
