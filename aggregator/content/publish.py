"""Pure rendering of entries as RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes.

The only module that imports feedgen. Every text is stripped of characters XML 1.0
cannot carry (C0 controls, lone surrogates, U+FFFE/U+FFFF) before it reaches a document.
Ids are ``urn:uuid:`` URNs derived from the entry's permanent uid, so an entry keeps
one id in every feed it appears in, and readers never show it twice.

Authors and enclosures follow what the W3C Feed Validator accepts (its rules are checked
by tests/feedcheck.py): RSS has at most one ``<author>``, an email address with a name,
else a ``dc:creator`` per author, never both; RSS has one ``<enclosure>`` (the first)
with its url, length and type all given, Atom a ``rel="enclosure"`` link for each, JSON
Feed an attachment for each.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.models import Enclosure, Person, PublishedEntry

Format = Literal["rss", "atom", "json"]
FORMATS: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
_NAMESPACE = uuid.UUID("8b0d5c64-5d0e-4c2b-9d7e-6f1f3c1b2a90")  # ours, for uuid5 ids
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# The validator's addr-spec and http URL patterns (feedvalidator validators.addr_spec,
# httpURL and rfc2396_full): a value outside them is an error in the feed.
_DOMAIN = r"(([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([A-Z0-9\-]+\.)+))([A-Z0-9][-A-Z0-9]*)"
_EMAIL = re.compile(r"[A-Z0-9_\-+.']+@" + _DOMAIN, re.I)
_HTTP_URL = re.compile(
    r"(http|https)://" + _DOMAIN + r"(:\d+)?(/|$)[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]*", re.I
)
_URL_SAFE = ";/?:@&=+$,-_.!~*'()%#"  # kept as they are; anything else is percent-encoded
# What RSS and JSON Feed say of a file of unknown type: they require one.
UNKNOWN_TYPE = "application/octet-stream"


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


def _web_url(url: str | None) -> str | None:
    """An absolute http(s) URL in the ASCII form feeds need (IDN host, percent-encoded
    path), or None when it is not one."""
    text = clean_text(url).strip()
    if not text.startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    netloc = host if port is None else f"{host}:{port}"
    path, query, fragment = (quote(x, safe=_URL_SAFE) for x in parts[2:])
    return urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))


def _email(person: Person) -> str | None:
    email = clean_text(person.email).strip()
    return email if _EMAIL.fullmatch(email) else None


def _authors(entry: PublishedEntry) -> list[Person]:
    """The entry's own authors, text made safe; the site when the feed named none."""
    people = [
        Person(clean_text(p.label).strip(), _email(p), _web_url(p.url)) for p in entry.authors
    ]
    people = [p for p in people if p.name]
    site = clean_text(entry.author).strip()
    return people or ([Person(site)] if site else [])


def _rss_authors(fe: FeedEntry, people: list[Person]) -> None:
    # One <author> at most ("email (Name)"; a second is an error), and not beside
    # dc:creator (a warning): a single author with an email gets <author>, else every
    # author is a dc:creator.
    if len(people) == 1 and people[0].email and people[0].name != people[0].email:
        # The name is an RFC 822 comment: no parentheses or backslashes inside.
        name = " ".join(re.sub(r"[()\\]", " ", people[0].name).split())
        if name:
            fe.author({"name": name, "email": people[0].email})
            return
    for person in people:
        fe.dc.dc_creator(person.name)


def _enclosures(entry: PublishedEntry) -> list[tuple[Enclosure, str]]:
    """(enclosure, its URL as published) for each enclosure with a web URL."""
    found = [(e, _web_url(e.url)) for e in entry.enclosures]
    return [(e, url) for e, url in found if url]


def _generator(meta: FeedMeta, entries: Sequence[PublishedEntry], kind: Format) -> FeedGenerator:
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
        people = _authors(entry)
        if kind == "rss":
            _rss_authors(fe, people)
        else:
            fe.author([_atom_person(p) for p in people])
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
        _add_enclosures(fe, entry, kind)
    return fg


def _atom_person(person: Person) -> dict[str, str]:
    data = {"name": person.name}
    if person.email:
        data["email"] = person.email
    if person.url:
        data["uri"] = person.url
    return data


def _add_enclosures(fe: FeedEntry, entry: PublishedEntry, kind: Format) -> None:
    enclosures = _enclosures(entry)
    if kind == "rss":
        # RSS 2.0 allows one, and requires all three attributes. Unknown length: 0, as
        # the RSS Best Practices Profile says and the validator accepts (it refuses -1).
        for enclosure, url in enclosures:
            if _HTTP_URL.fullmatch(url):
                length = str(enclosure.length or 0)
                fe.enclosure(url, length, enclosure.media_type or UNKNOWN_TYPE)
                return
        return
    if not enclosures:
        return
    fe.register_extension("enclosure_links", _EnclosureLinks, atom=True, rss=False)
    for enclosure, url in enclosures:
        link = {"rel": "enclosure", "href": url}
        if enclosure.media_type:
            link["type"] = enclosure.media_type
        if enclosure.length:  # Atom's length is advisory: left out when unknown
            link["length"] = str(enclosure.length)
        fe.enclosure_links.links.append(link)


class _EnclosureLinks(BaseEntryExtension):  # type: ignore[misc]
    """An Atom entry's ``rel="enclosure"`` links.

    Not through ``FeedEntry.link``: feedgen 1.0 writes an entry's links with their href
    alone (``atom_entry`` reads rel, type and length from the element it has just made,
    not from the link given), so an enclosure would come out as a second alternate link
    (the validator's DuplicateAtomLink).
    """

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        for attributes in self.links:
            etree.SubElement(entry, "link", attributes)
        return entry


def render_rss(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """RSS 2.0 with content:encoded, author or dc:creator, media:thumbnail, enclosure and
    atom:link self."""
    data: bytes = _generator(meta, entries, "rss").rss_str(pretty=False)
    return data


def render_atom(meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """Atom 1.0 with html content, summaries, authors, media:thumbnail and enclosure
    links."""
    data: bytes = _generator(meta, entries, "atom").atom_str(pretty=False)
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
        authors = [{"name": p.name, **({"url": p.url} if p.url else {})} for p in _authors(entry)]
        if authors:
            item["authors"] = authors
        attachments = [_attachment(e, url) for e, url in _enclosures(entry)]
        if attachments:
            item["attachments"] = attachments
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


def _attachment(enclosure: Enclosure, url: str) -> dict[str, object]:
    # JSON Feed requires url and mime_type; size_in_bytes is optional, left out unknown.
    data: dict[str, object] = {"url": url, "mime_type": enclosure.media_type or UNKNOWN_TYPE}
    if enclosure.length:
        data["size_in_bytes"] = enclosure.length
    return data


RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}


def render(kind: Format, meta: FeedMeta, entries: Sequence[PublishedEntry]) -> bytes:
    """Render entries as a feed document of the given format."""
    return RENDERERS[kind](meta, entries)
