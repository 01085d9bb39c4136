"""feedparser on bytes and headers, turned into our own types at this boundary.

A JSON document (JSON Feed) goes to ``jsonfeed`` instead: feedparser does not read it.

feedparser's string-keyed dicts never leave this module. It is given bytes we already
decoded to UTF-8 (see ``encoding``), with its own HTML sanitiser and URI resolution off:
``clean`` does both, once, faster, and with rules feedparser does not know.
"""

from __future__ import annotations

import calendar
import html
import re
import time
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser

from aggregator.content.clean import TAG, is_http, text_to_html
from aggregator.content.encoding import decode_document
from aggregator.content.jsonfeed import is_json_feed, parse_json_feed
from aggregator.errors import ParseError
from aggregator.models import Enclosure, ParsedEntry, ParsedFeed, Person, guess_media_type

T = TypeVar("T")

_HTML_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}

# An entry's start tag (whole, up to its '>') and end tag, with any namespace prefix.
_ENTRY_START = re.compile(rb"<(?:[\w.-]+:)?(?:item|entry)(?:\s[^<>]*)?>")
_ENTRY_END = re.compile(rb"</(?:[\w.-]+:)?(?:item|entry)\s*>")


def _to_datetime(value: Any) -> datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    try:
        when = datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None
    # A date before 1970 in a feed is a placeholder or an attack, not a publication date.
    return when if when.year >= 1970 else None


def _as_html(detail: Mapping[str, Any] | None) -> str:
    if not detail:
        return ""
    value = str(detail.get("value") or "")
    kind = str(detail.get("type") or "text/html").lower()
    if kind in _HTML_TYPES or "html" in kind:
        return value
    return text_to_html(value)  # plain text: escaped, its paragraphs kept


# Elements whose text is never a title's: a title's markup is dropped, these with it.
_UNSEEN = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)", re.S | re.I)
_END_TAG = re.compile(r"</[a-zA-Z][\w-]*\s*>")


def _plain(detail: Mapping[str, Any] | None, value: Any, atom: bool = False) -> str:
    text = str(value or "")
    kind = str((detail or {}).get("type") or "text/plain").lower()
    # RSS says nothing of a title's type: feedparser calls it HTML when it has an end
    # tag, unless it holds an element it dislikes (a script): that is HTML all the more.
    # Atom declares its type, so there "<script>" in a text title is the word.
    if "html" in kind or (not atom and _END_TAG.search(text)):
        text = html.unescape(TAG.sub("", _UNSEEN.sub("", text)))
    return text


def _is_image(kind: str, medium: str, url: str) -> bool:
    """Whether a media:content or enclosure is a picture: its type or medium says so;
    when it has neither, the extension of its URL does (newspapers give
    ``<media:content url="…/photo.jpg?width=140"/>`` and nothing else)."""
    if kind.startswith("image/") or medium == "image":
        return True
    if kind or medium:  # a video, an audio file, a document
        return False
    return guess_media_type(url).startswith("image/")


def _images(raw: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for thumb in raw.get("media_thumbnail") or ():
        found.append(str(thumb.get("url") or ""))  # a thumbnail is an image (MRSS)
    for media in raw.get("media_content") or ():
        url = str(media.get("url") or "")
        kind = str(media.get("type") or "").strip().lower()
        if _is_image(kind, str(media.get("medium") or "").strip().lower(), url):
            found.append(url)
    for link in raw.get("links") or ():
        if link.get("rel") == "enclosure":
            url = str(link.get("href") or "")
            if _is_image(_enclosure_type(link), "", url):
                found.append(url)
    return tuple(u for u in dict.fromkeys(found) if u)


def _authors(raw: Mapping[str, Any], atom: bool) -> tuple[Person, ...]:
    found: list[Person] = []
    details = list(raw.get("authors") or ())
    previous: Mapping[str, Any] = {}
    for index, detail in enumerate(details):
        name = str(detail.get("name") or "").strip()
        email = str(detail.get("email") or "").strip()
        if atom and index:
            name, email = _own(name, email, previous)
        if index == len(details) - 1 and email:
            # raw["author"] is the text of the last author element, as written.
            name, email = _whole_email(name, email, str(raw.get("author") or ""))
        url = str(detail.get("href") or "").strip() or None
        person = Person(name=name, email=email or None, url=url)
        if person.label:
            found.append(person)
        previous = detail
    if not found and raw.get("author"):  # a bare dc:creator or RSS author string
        found.append(Person(str(raw["author"]).strip()))
    return tuple(dict.fromkeys(found))


def _own(name: str, email: str, previous: Mapping[str, Any]) -> tuple[str, str]:
    """An Atom author's own name and email, without what feedparser copied from the one
    before it.

    feedparser starts each new author from the text it made of the previous one ("A
    (a@x.org)", mixin._sync_author_detail) when the new one's first child is read: its
    own elements replace the copies, but a nameless author keeps the previous name, one
    without an email the previous email. A value equal to the copy is dropped (two
    authors sharing one address lose it on the second: rare; the byline keeps names).
    """
    copied_name, copied_email = _copied(previous)
    return (
        "" if name and name == copied_name else name,
        "" if email and email == copied_email else email,
    )


# feedparser's email pattern, faults included (a top-level domain of 2 to 4 letters).
_FEEDPARSER_EMAIL = re.compile(
    r"(([a-zA-Z0-9_\-.+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"
    r"([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"
)


def _copied(previous: Mapping[str, Any]) -> tuple[str, str]:
    """The (name, email) feedparser gives an author from the text of the one before."""
    name = str(previous.get("name") or "")
    email = str(previous.get("email") or "")
    text = f"{name} ({email})" if name and email else name or email
    match = _FEEDPARSER_EMAIL.search(text)
    if match is None:
        return text.strip(), ""
    text = text.replace(match.group(0), "").replace("()", "").replace("<>", "")
    text = text.replace("&lt;&gt;", "").strip()
    text = text.removeprefix("(").removesuffix(")")
    return text.strip(), match.group(0)


_EMAIL = re.compile(r"[A-Za-z0-9_.+'-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")


def _whole_email(name: str, email: str, written: str) -> tuple[str, str]:
    """Undo feedparser's cut of an RSS ``<author>``'s email address.

    feedparser finds the address with a pattern that ends the domain after at most four
    letters: "letters@paper.example (Letters Editor)" gives the email "letters@paper.exam"
    and the name "ple (Letters Editor". Read from the text as written, it is whole.
    """
    match = _EMAIL.search(written)
    if match is None or match.group(0) == email or not match.group(0).startswith(email):
        return name, email
    rest = written.replace(match.group(0), "").replace("()", "").replace("<>", "").strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1].strip()
    return rest, match.group(0)


def _length(value: Any) -> int | None:
    try:
        length = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


def _enclosure_type(link: Mapping[str, Any]) -> str:
    kind = str(link.get("type") or "").strip().lower()
    # feedparser gives an Atom link without a type the type text/html: for an enclosure
    # (a file, "potentially large") that says nothing, and it would hide an audio file.
    return "" if kind == "text/html" else kind


def _enclosures(raw: Mapping[str, Any]) -> tuple[Enclosure, ...]:
    found: dict[str, Enclosure] = {}
    for link in raw.get("enclosures") or ():
        url = str(link.get("href") or "").strip()
        if url and url not in found:
            found[url] = Enclosure(url, _enclosure_type(link), _length(link.get("length")))
    return tuple(found.values())


def _base(detail: Mapping[str, Any] | None) -> str | None:
    return str(detail.get("base") or "") or None if detail else None


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _absolute(url: str, base: str | None) -> str:
    """``url`` resolved against ``base`` when it is relative (RFC 3986 §5.2)."""
    if not base or not is_http(base) or _SCHEME.match(url):
        return url
    try:
        return urljoin(base, url)
    except ValueError:  # e.g. a broken IPv6 host: left as it is, never used
        return url


def _entry(raw: dict[str, Any], atom: bool, document_base: str | None) -> ParsedEntry:
    contents = raw.get("content") or []
    # Atom may carry several content elements; prefer the HTML one, then the longest.
    best = max(
        contents,
        key=lambda c: (str(c.get("type", "")).endswith("html"), len(str(c.get("value", "")))),
        default=None,
    )
    summary_html = _as_html(raw.get("summary_detail"))
    content_html = _as_html(best) if best is not None else summary_html
    tags = tuple(
        dict.fromkeys(
            str(t.get("term") or t.get("label") or "").strip() for t in raw.get("tags") or ()
        )
    )
    summary_detail = raw.get("summary_detail")
    content_base = _base(best) if best is not None else _base(summary_detail)
    # feedparser resolves links, but not media: or RSS enclosure URLs; the entry's base
    # is that of its title (or body), else the document's.
    base = _base(raw.get("title_detail")) or _base(summary_detail) or content_base or document_base
    return ParsedEntry(
        guid=str(raw["id"]) if raw.get("id") else None,
        link=str(raw["link"]) if raw.get("link") else None,
        title=_plain(raw.get("title_detail"), raw.get("title"), atom),
        content_html=content_html,
        summary_html=summary_html,
        # dict.get, not raw.get: feedparser's own get() maps a missing updated_parsed
        # to published_parsed with a DeprecationWarning (feedparser issue 310).
        published=_to_datetime(dict.get(raw, "published_parsed")),
        updated=_to_datetime(dict.get(raw, "updated_parsed")),
        authors=_authors(raw, atom),
        tags=tuple(t for t in tags if t),
        images=tuple(_absolute(url, base) for url in _images(raw)),
        enclosures=tuple(replace(e, url=_absolute(e.url, base)) for e in _enclosures(raw)),
        content_base=content_base,
        summary_base=_base(summary_detail),
    )


def parse_feed(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse a feed document.

    Args:
        url: where it came from (for messages and relative links only; never fetched).
        body: the document's bytes: RSS, Atom or JSON Feed.
        headers: the HTTP response headers, if any (``Content-Type`` matters).

    Returns:
        The feed with every readable entry; unreadable entries are listed in ``skipped``.

    Raises:
        ParseError: the document is empty or not a feed at all.
    """
    if not body.strip():
        raise ParseError(url, "empty document")
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if is_json_feed(body, lowered.get("content-type")):
        return without_nul(parse_json_feed(url, body, lowered.get("content-type")))
    return without_nul(_parse_xml(url, body, lowered))


def _parse_xml(url: str, body: bytes, lowered: Mapping[str, str]) -> ParsedFeed:
    """``parse_feed`` of an RSS or Atom document (``lowered``: its headers, names in
    lower case)."""
    decoded = decode_document(body, lowered.get("content-type"))
    response_headers = {**lowered, "content-type": decoded.content_type}
    response_headers.pop("content-encoding", None)  # already decoded by the fetcher
    # The base of relative links: the document's Content-Location, itself relative to
    # the URL it came from (RFC 9110 §8.7), else that URL (RFC 3986 §5.1.3).
    location = response_headers.get("content-location", "").strip()
    response_headers["content-location"] = _absolute(location, url) if location else url
    parsed = feedparser.parse(
        decoded.body,
        response_headers=response_headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    problem = parsed.get("bozo_exception")
    version = parsed.get("version") or ""
    # A channel with no entries yet whose title has an undefined entity (&nbsp; in RSS)
    # is still a feed: feedparser's loose parser read it; only its complaint is kept.
    titled = bool(version and parsed.get("feed", {}).get("title"))
    if not parsed.entries and (not version or (problem is not None and not titled)):
        reason = f"{type(problem).__name__}: {problem}" if problem else "no feed found"
        raise ParseError(url, f"not a usable feed ({reason})")
    entries: list[ParsedEntry] = []
    skipped: list[str] = []
    raw_entries = list(parsed.entries)
    if raw_entries and _ends_mid_entry(problem, decoded.body):
        # The document ends mid-entry (a dropped connection, a full disk upstream): its
        # last entry is incomplete and would be stored as a bogus, id-less duplicate.
        raw_entries.pop()
        skipped.append(f"entry {len(raw_entries) + 1}: dropped, the document is cut short")
    feed = parsed.get("feed", {})
    atom = version.startswith("atom")
    document_base = _base(feed.get("title_detail")) or response_headers["content-location"]
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_entry(raw, atom, document_base))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            skipped.append(f"entry {index + 1}: {type(exc).__name__}: {exc}")
    return ParsedFeed(
        title=_plain(feed.get("title_detail"), feed.get("title"), atom),
        link=str(feed["link"]) if feed.get("link") else None,
        entries=tuple(entries),
        skipped=tuple(skipped),
        warning=f"{type(problem).__name__}: {problem}" if problem else None,
        ttl=_text(feed.get("ttl")),
        update_period=_text(feed.get("sy_updateperiod")),
        update_frequency=_text(feed.get("sy_updatefrequency")),
        encoding_warning=decoded.guessed,
    )


def without_nul(value: T) -> T:
    """``value`` (a parsed feed, and every string, tuple and dataclass inside) without
    NUL characters.

    A NUL is never text: XML forbids it as a byte and as a reference, yet feedparser's
    loose parser turns ``&#0;`` into one, and JSON Feed may spell it ``\\u0000``.
    PostgreSQL's text cannot hold it (the entry's row, and with it the whole poll,
    would fail to be stored), and an article's file never carried it.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(without_nul(v) for v in value)  # type: ignore[return-value]
    if is_dataclass(value) and not isinstance(value, type):
        changed = {
            f.name: new
            for f in fields(value)
            if (new := without_nul(old := getattr(value, f.name))) != old
        }
        return replace(value, **changed) if changed else value
    return value


def _ends_mid_entry(problem: object, body: bytes) -> bool:
    """True when the document was cut short inside its last entry.

    Cut short: the XML error is at the very end. Inside an entry: the last entry start
    tag comes after the last entry end tag. A document cut after its last entry (only
    ``</channel></rss>`` lost) keeps every entry.
    """
    if not isinstance(problem, SAXParseException):
        return False
    lines = body.rstrip().split(b"\n")
    line, column = problem.getLineNumber() or 0, problem.getColumnNumber() or 0
    if line < len(lines) or (line == len(lines) and column < len(lines[-1].rstrip()) - 1):
        return False  # an error somewhere in the middle: not a truncation
    starts = [m.start() for m in _ENTRY_START.finditer(body)]
    ends = [m.start() for m in _ENTRY_END.finditer(body)]
    return bool(starts) and (not ends or starts[-1] > ends[-1])


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None
