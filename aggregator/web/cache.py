"""A bounded cache of rendered feeds (by count and by bytes), least recently used out.

Each value remembers the store's content version it was rendered at; a newer version
makes it stale, so feeds are re-rendered only after entries changed.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime


@dataclass
class Rendered:
    """One rendered feed document and its HTTP validators."""

    body: bytes
    content_type: str
    last_modified: datetime
    version: int  # the store's content version it was rendered at
    etag: str = ""
    _gzipped: bytes | None = field(default=None, repr=False)

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

    def get(self, key: tuple[object, ...], version: int) -> Rendered | None:
        """The cached feed, if it is there and as new as ``version``."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item.version != version:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

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

    def peek(self, key: tuple[object, ...]) -> Rendered | None:
        """The item under ``key`` whatever its version (to keep its Last-Modified)."""
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes
