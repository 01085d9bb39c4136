"""JSON Feed 1.0 and 1.1 documents, read into the same ``ParsedFeed`` as RSS and Atom.

Pure, no I/O. Specs: https://jsonfeed.org/version/1.1 and https://jsonfeed.org/version/1.
The rules are the XML path's: ``id`` is the guid (a number is made a string, as 1.1 says
a reader must), plain text (``content_text``, ``summary``) is escaped into paragraphs,
dates before 1970 are not trusted, and image attachments are header-image candidates too.
An item without its own authors has the feed's (both versions say so).

JSON from the wild is trusted in nothing: a value of the wrong type is treated as absent,
an item that is not an object is skipped with a message, and a document that is not
JSON, nests too deep or is not a JSON Feed at all is a ``ParseError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from aggregator.content.clean import is_http, text_to_html
from aggregator.content.encoding import decode_text
from aggregator.errors import ParseError
from aggregator.models import Enclosure, ParsedEntry, ParsedFeed, Person

VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")
_JSON_TYPES = ("application/feed+json", "application/json")
# What may stand before a document's first character: byte-order marks, the NULs of
# UTF-16/32, whitespace.
_LEADING = b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n"
_JSON_NAMES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("null", type(None)),
    ("boolean", bool),  # before number: a bool is an int to Python
    ("number", (int, float)),
    ("string", str),
    ("array", list),
    ("object", dict),
)


def is_json_feed(body: bytes, content_type: str | None) -> bool:
    """Whether to read a document as JSON: it starts with ``{`` (or ``[``: a JSON error
    then says more than an XML one), or with neither nor ``<`` and the server says JSON."""
    first = body[:256].lstrip(_LEADING)[:1]
    if first in (b"{", b"[", b"<"):
        return first != b"<"
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in _JSON_TYPES or media_type.endswith("+json")


def parse_json_feed(url: str, body: bytes, content_type: str | None = None) -> ParsedFeed:
    """Parse a JSON Feed document.

    Args:
        url: where it came from: the base of relative URLs when it is http(s).
        body: the document's bytes (UTF-8 by RFC 8259; a BOM, UTF-16 and UTF-32 are read).
        content_type: the HTTP ``Content-Type`` header, if there was one.

    Returns:
        The feed with every readable item; unreadable items are listed in ``skipped``.

    Raises:
        ParseError: the document is not JSON, or not a JSON Feed.
    """
    decoded = decode_text(body, content_type)
    try:
        data = json.loads(decoded.text, parse_int=_integer)
    except RecursionError:
        raise ParseError(url, "not a usable feed (JSON nested too deep)") from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise ParseError(url, f"not a usable feed (JSON: {exc})") from None
    if not isinstance(data, dict):
        raise ParseError(url, f"not a usable feed (a JSON {_kind(data)}, not an object)")
    version = _string(data.get("version"))
    items = data.get("items")
    if version not in VERSIONS and not isinstance(items, list):
        raise ParseError(url, "not a usable feed (JSON, but no JSON Feed version or items)")
    warnings = []
    if version not in VERSIONS:
        warnings.append(f"JSON Feed version {version or 'missing'}: read as 1.1")
    if not isinstance(items, list):
        warnings.append("JSON Feed without an items list: no entries")
        items = []

    base = _base(url, data)
    feed_authors = _authors(data, base)
    entries: list[ParsedEntry] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            skipped.append(f"entry {index + 1}: a JSON {_kind(item)}, not an object")
            continue
        try:
            entries.append(_entry(item, base, feed_authors))
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            skipped.append(f"entry {index + 1}: {type(exc).__name__}: {exc}")
    return ParsedFeed(
        title=_string(data.get("title")),
        link=_url(data.get("home_page_url"), base),
        entries=tuple(entries),
        skipped=tuple(skipped),
        warning="; ".join(warnings) or None,
        encoding_warning=decoded.guessed,
    )


def _integer(digits: str) -> int | str:
    """A JSON integer; one too long for Python to convert (it refuses over 4300 digits)
    stays text, so one absurd number cannot fail the whole document."""
    return int(digits) if len(digits) <= 4000 else digits


def _base(url: str, data: Mapping[str, Any]) -> str | None:
    """The document's URL when it is a web address; else the feed's own ``feed_url``."""
    if is_http(url):
        return url
    feed_url = _string(data.get("feed_url"))
    return feed_url if is_http(feed_url) else None


def _string(value: Any) -> str:
    """A JSON string, stripped; anything else is ''."""
    return value.strip() if isinstance(value, str) else ""


def _id(value: Any) -> str | None:
    """An item's id: a string, or a number made one (1.1: "a JSON Feed reader must coerce
    it to a string"); anything else, or an empty one, is no id."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _string(value) or None


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    for name, types in _JSON_NAMES:
        if isinstance(value, types):
            return name
    return type(value).__name__


def _url(value: Any, base: str | None) -> str | None:
    text = _string(value)
    if not text or not base:
        return text or None
    try:
        return urljoin(base, text)
    except ValueError:  # "http://[::1": no URL a browser would load
        return None


def _entry(
    item: Mapping[str, Any], base: str | None, feed_authors: tuple[Person, ...]
) -> ParsedEntry:
    summary_html = text_to_html(_string(item.get("summary")))
    content_html = _string_raw(item.get("content_html"))
    if not content_html:
        content_html = text_to_html(_string_raw(item.get("content_text"))) or summary_html
    enclosures = _attachments(item.get("attachments"), base)
    images = [_url(item.get(key), base) for key in ("image", "banner_image")]
    images += [e.url for e in enclosures if e.type.startswith("image/")]
    return ParsedEntry(
        guid=_id(item.get("id")),
        link=_url(item.get("url"), base) or _url(item.get("external_url"), base),
        title=_string(item.get("title")),
        content_html=content_html,
        summary_html=summary_html,
        published=_date(item.get("date_published")),
        updated=_date(item.get("date_modified")),
        authors=_authors(item, base) or feed_authors,
        tags=tuple(dict.fromkeys(t for t in map(_string, _list(item.get("tags"))) if t)),
        images=tuple(dict.fromkeys(u for u in images if u)),
        enclosures=enclosures,
        content_base=base,
        summary_base=base,
    )


def _string_raw(value: Any) -> str:
    """A body as given (leading whitespace may matter in text), '' when not a string."""
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _authors(owner: Mapping[str, Any], base: str | None) -> tuple[Person, ...]:
    """1.1's ``authors`` list, else 1.0's single ``author`` object (either shape in either
    key: feeds mix them up)."""
    found: list[Person] = []
    raw = owner.get("authors", owner.get("author"))
    for author in raw if isinstance(raw, list) else [raw]:
        if isinstance(author, str):  # a bare name, as some 1.0 feeds write it
            author = {"name": author}
        if not isinstance(author, dict):
            continue
        link = _url(author.get("url"), base)
        email = None
        if link and link.lower().startswith("mailto:"):
            email, link = link[len("mailto:") :] or None, None
        person = Person(name=_string(author.get("name")), email=email, url=link)
        if person.label:
            found.append(person)
    return tuple(dict.fromkeys(found))


def _attachments(value: Any, base: str | None) -> tuple[Enclosure, ...]:
    found: dict[str, Enclosure] = {}
    for attachment in _list(value):
        if not isinstance(attachment, dict):
            continue
        url = _url(attachment.get("url"), base)
        if url and url not in found:
            kind = _string(attachment.get("mime_type")).lower()
            found[url] = Enclosure(url, kind, _size(attachment.get("size_in_bytes")))
    return tuple(found.values())


def _size(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return int(value)


def _date(value: Any) -> datetime | None:
    """RFC 3339 (as the spec says), else RFC 822 (seen in the wild); UTC when no zone."""
    text = _string_raw(value).strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.upper().replace(" ", "T", 1))
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    try:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        return None
    # A date before 1970 in a feed is a placeholder or an attack, not a publication date.
    return when.replace(microsecond=0) if when.year >= 1970 else None  # as XML dates: whole seconds
