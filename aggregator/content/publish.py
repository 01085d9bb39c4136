"""Pure rendering of entries as RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes.

The only module that imports feedgen. Every text is stripped of characters XML 1.0
cannot carry (C0 controls, lone surrogates, U+FFFE/U+FFFF) before it reaches a document.
Ids are ``urn:uuid:`` URNs derived from the entry's permanent uid, so an entry keeps
one id in every feed it appears in, and readers never show it twice.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from feedgen.feed import FeedGenerator

from aggregator import __version__
from aggregator.models import PublishedEntry

Format = Literal["rss", "atom", "json"]
FORMATS: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
_NAMESPACE = uuid.UUID("8b0d5c64-5d0e-4c2b-9d7e-6f1f3c1b2a90")  # ours, for uuid5 ids
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """The feed-level facts of one published feed."""

    title: str
    description: str
    feed_url: str  # absolute URL of this very document (the self link)
    home_url: str  # absolute URL of the dashboard page for it (the alternate link)
    key: str  # what the feed is (e.g. "category:金融/新浪财经"), for its stable id
    generated: datetime  # used as the updated time of an empty feed


def entry_id(uid: str) -> str:
    """The permanent id of an entry in every format."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, uid)}"


def feed_id(key: str) -> str:
    """The permanent id of a feed (the same for its three formats)."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'feed:' + key)}"


def clean_text(text: str | None) -> str:
    """Text without the characters XML 1.0 forbids."""
    return _INVALID_XML.sub("", text or "")


def _updated(entry: PublishedEntry) -> datetime:
    return entry.updated or entry.published or entry.date


def feed_updated(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> datetime:
    """The feed's updated time: its newest entry's, or the time it was made if empty."""
    return max((_updated(e) for e in entries), default=meta.generated)


def _generator(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("media", rss=True, atom=True)
    fg.load_extension("dc", rss=True, atom=False)
    fg.id(feed_id(meta.key))
    fg.title(clean_text(meta.title) or "aggregator")
    fg.subtitle(clean_text(meta.description) or clean_text(meta.title) or "aggregator")
    fg.link(href=meta.feed_url, rel="self")
    # feedgen takes the last link as RSS's <link>: the alternate (the page), not self.
    fg.link(href=meta.home_url, rel="alternate", type="text/html")
    fg.generator("aggregator", version=__version__)
    fg.updated(feed_updated(meta, entries))
    fg.lastBuildDate(feed_updated(meta, entries))
    fg.author({"name": clean_text(meta.title) or "aggregator"})
    for entry in entries:
        fe = fg.add_entry(order="append")
        fe.id(entry_id(entry.uid))
        fe.guid(entry_id(entry.uid), permalink=False)
        fe.title(clean_text(entry.title) or "(untitled)")
        if entry.link:
            fe.link(href=clean_text(entry.link), rel="alternate", type="text/html")
        author = clean_text(entry.author)
        if author:
            fe.author({"name": author})
            fe.dc.dc_creator(author)
        fe.content(clean_text(entry.body_html) or "<p></p>", type="html")
        fe.summary(clean_text(entry.summary) or clean_text(entry.title) or "(untitled)")
        fe.published(entry.published or entry.date)
        fe.updated(_updated(entry))
        for term in dict.fromkeys((*entry.categories, *entry.tags)):
            term = clean_text(term)
            if term:
                fe.category(term=term)
        if entry.headimg:
            fe.media.thumbnail({"url": clean_text(entry.headimg)}, group=None)
    return fg


def render_rss(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """RSS 2.0 with content:encoded, dc:creator, media:thumbnail and atom:link self."""
    data: bytes = _generator(meta, entries).rss_str(pretty=False)
    return data


def render_atom(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """Atom 1.0 with html content, summaries and media:thumbnail."""
    data: bytes = _generator(meta, entries).atom_str(pretty=False)
    return data


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_json(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    items = []
    for entry in entries:
        item: dict[str, object] = {
            "id": entry_id(entry.uid),
            "title": clean_text(entry.title),
            "content_html": clean_text(entry.body_html),
            "summary": clean_text(entry.summary),
            "date_published": _rfc3339(entry.published or entry.date),
            "date_modified": _rfc3339(_updated(entry)),
        }
        if entry.link:
            item["url"] = clean_text(entry.link)
        if entry.headimg:
            item["image"] = clean_text(entry.headimg)
        if entry.author:
            item["authors"] = [{"name": clean_text(entry.author)}]
        tags = [clean_text(t) for t in dict.fromkeys((*entry.categories, *entry.tags)) if t]
        if tags:
            item["tags"] = tags
        items.append(item)
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": clean_text(meta.title),
        "home_page_url": meta.home_url,
        "feed_url": meta.feed_url,
        "description": clean_text(meta.description),
        "authors": [{"name": clean_text(meta.title) or "aggregator"}],
        "items": items,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}


def render(kind: Format, meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """Render entries as a feed document of the given format."""
    return RENDERERS[kind](meta, entries)
