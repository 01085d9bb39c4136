"""Validity checks for our RSS 2.0, Atom 1.0 and JSON Feed 1.1 output.

The W3C Feed Validator cannot be installed here (it is not packaged for Python 3 or
Debian), so this module checks the rules it enforces that our output could break: the
elements each format requires, date syntax (RFC 822 with a four-digit year for RSS,
RFC 3339 for Atom and JSON Feed), absolute URLs, unique ids, the self link, declared
namespaces, no characters XML forbids, authors (RSS: one ``<author>``, "email (Name)",
not beside dc:creator; Atom: a name, an addr-spec email, an IRI), enclosures (RSS: one,
with an http URL, a length that is a non-negative integer and a MIME type; Atom
enclosure links: a MIME type and a non-negative length when given), and the JSON Feed 1.1
schema (attachments included). The patterns are the validator's own (feedvalidator's
validators.py: mime_re, addr_spec, httpURL). Each function returns a list of problems
(empty: valid).
"""

from __future__ import annotations

import json
import re
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import urlsplit

import feedparser
import jsonschema
from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
DC = "http://purl.org/dc/elements/1.1/"
MEDIA = "http://search.yahoo.com/mrss/"
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} ([+-]\d{4}|GMT|UT)$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# The validator's patterns (feedvalidator/validators.py).
MIME_TYPE = re.compile(
    r'[^\s()<>,;:\\"/\[\]?=]+/[^\s()<>,;:\\"/\[\]?=]+'
    r'(\s*;\s*[^\s()<>,;:\\"/\[\]?=]+=("(\\"|[^"])*"|[^\s()<>,;:\\"/\[\]?=]+))*$'
)
DOMAIN = r"(([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([A-Z0-9\-]+\.)+))([A-Z0-9][-A-Z0-9]*)"
ADDR_SPEC = re.compile(r"([A-Z0-9_\-+.']+)@" + DOMAIN + "$", re.I)
HTTP_URL = re.compile(r"(http|https)://" + DOMAIN + r"(?::\d+)?(/|$)", re.I)
FULL_URI = re.compile(r"[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")

JSON_FEED_SCHEMA = {
    "type": "object",
    "required": ["version", "title", "items"],
    "properties": {
        "version": {"const": "https://jsonfeed.org/version/1.1"},
        "title": {"type": "string", "minLength": 1},
        "home_page_url": {"type": "string", "format": "uri"},
        "feed_url": {"type": "string", "format": "uri"},
        "description": {"type": "string"},
        "authors": {"type": "array", "items": {"$ref": "#/$defs/author"}},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "anyOf": [{"required": ["content_html"]}, {"required": ["content_text"]}],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "url": {"type": "string"},
                    "title": {"type": "string"},
                    "content_html": {"type": "string"},
                    "summary": {"type": "string"},
                    "image": {"type": "string"},
                    "date_published": {"type": "string", "pattern": RFC3339.pattern},
                    "date_modified": {"type": "string", "pattern": RFC3339.pattern},
                    "authors": {"type": "array", "items": {"$ref": "#/$defs/author"}},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "attachments": {"type": "array", "items": {"$ref": "#/$defs/attachment"}},
                },
            },
        },
    },
    "$defs": {
        "author": {
            "type": "object",
            "anyOf": [{"required": ["name"]}, {"required": ["url"]}, {"required": ["avatar"]}],
            "properties": {"name": {"type": "string"}, "url": {"type": "string"}},
        },
        "attachment": {
            "type": "object",
            "required": ["url", "mime_type"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "mime_type": {"type": "string", "pattern": MIME_TYPE.pattern},
                "title": {"type": "string"},
                "size_in_bytes": {"type": "integer", "minimum": 0},
                "duration_in_seconds": {"type": "number", "minimum": 0},
            },
        },
    },
}


def _absolute(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _text(element: etree._Element | None) -> str:
    return (element.text or "") if element is not None else ""


def check_rss(body: bytes, self_url: str | None = None) -> list[str]:
    problems: list[str] = []
    if INVALID_XML.search(body.decode("utf-8")):
        problems.append("characters XML forbids")
    root = etree.fromstring(body)
    if root.tag != "rss" or root.get("version") != "2.0":
        problems.append("root is not <rss version=2.0>")
    channels = root.findall("channel")
    if len(channels) != 1:
        return [*problems, "not exactly one <channel>"]
    channel = channels[0]
    for name in ("title", "link", "description"):
        if not _text(channel.find(name)).strip():
            problems.append(f"channel <{name}> missing or empty")
    if not _absolute(_text(channel.find("link"))):
        problems.append("channel <link> is not an absolute URL")
    for name in ("lastBuildDate", "pubDate"):
        value = channel.find(name)
        if value is not None and not RFC822.match(_text(value)):
            problems.append(f"channel <{name}> is not RFC 822: {_text(value)!r}")
    selves = [ln for ln in channel.findall(f"{{{ATOM}}}link") if ln.get("rel") == "self"]
    if len(selves) != 1 or not _absolute(selves[0].get("href")):
        problems.append("missing atom:link rel=self with an absolute href")
    elif self_url is not None and selves[0].get("href") != self_url:
        problems.append(f"atom:link self is {selves[0].get('href')!r}, not {self_url!r}")
    guids: set[str] = set()
    for index, item in enumerate(channel.findall("item")):
        where = f"item {index + 1}"
        if item.find("title") is None and item.find("description") is None:
            problems.append(f"{where}: neither title nor description")
        guid = item.find("guid")
        if guid is None or not _text(guid):
            problems.append(f"{where}: no guid")
        else:
            if _text(guid) in guids:
                problems.append(f"{where}: duplicate guid")
            guids.add(_text(guid))
            if guid.get("isPermaLink", "true") == "true" and not _absolute(_text(guid)):
                problems.append(f"{where}: permalink guid is not a URL")
        link = item.find("link")
        if link is not None and not _absolute(_text(link)):
            problems.append(f"{where}: <link> is not an absolute URL")
        date = item.find("pubDate")
        if date is not None:
            if not RFC822.match(_text(date)):
                problems.append(f"{where}: pubDate is not RFC 822: {_text(date)!r}")
            else:
                parsedate_to_datetime(_text(date))
        problems += [f"{where}: {p}" for p in _rss_author_problems(item)]
        problems += [f"{where}: {p}" for p in _rss_enclosure_problems(item)]
        for thumb in item.findall(f"{{{MEDIA}}}thumbnail"):
            if not _absolute(thumb.get("url")):
                problems.append(f"{where}: media:thumbnail url is not absolute")
        for category in item.findall("category"):
            if not _text(category).strip():
                problems.append(f"{where}: empty category")
        for child in item:
            namespace = etree.QName(child).namespace
            if namespace not in (None, CONTENT, DC, MEDIA, ATOM):
                problems.append(f"{where}: element in unknown namespace {namespace}")
    return problems + _feedparser_problems(body)


def check_atom(body: bytes, self_url: str | None = None) -> list[str]:
    problems: list[str] = []
    if INVALID_XML.search(body.decode("utf-8")):
        problems.append("characters XML forbids")
    root = etree.fromstring(body)
    ns = {"a": ATOM}
    if root.tag != f"{{{ATOM}}}feed":
        return ["root is not atom:feed"]
    for name in ("id", "title", "updated"):
        if not _text(root.find(f"a:{name}", ns)).strip():
            problems.append(f"feed <{name}> missing or empty")
    if not RFC3339.match(_text(root.find("a:updated", ns))):
        problems.append("feed <updated> is not RFC 3339")
    selves = [ln for ln in root.findall("a:link", ns) if ln.get("rel") == "self"]
    if len(selves) != 1 or not _absolute(selves[0].get("href")):
        problems.append("missing link rel=self with an absolute href")
    elif self_url is not None and selves[0].get("href") != self_url:
        problems.append(f"self link is {selves[0].get('href')!r}, not {self_url!r}")
    feed_author = root.find("a:author/a:name", ns) is not None
    ids: set[str] = set()
    for index, entry in enumerate(root.findall("a:entry", ns)):
        where = f"entry {index + 1}"
        for name in ("id", "title", "updated"):
            if not _text(entry.find(f"a:{name}", ns)).strip():
                problems.append(f"{where}: <{name}> missing or empty")
        entry_id = _text(entry.find("a:id", ns))
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", entry_id):
            problems.append(f"{where}: id is not an IRI")
        if entry_id in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(entry_id)
        for name in ("updated", "published"):
            value = entry.find(f"a:{name}", ns)
            if value is not None and not RFC3339.match(_text(value)):
                problems.append(f"{where}: <{name}> is not RFC 3339: {_text(value)!r}")
        if not feed_author and entry.find("a:author/a:name", ns) is None:
            problems.append(f"{where}: no author (and none on the feed)")
        content = entry.find("a:content", ns)
        if content is None and not any(
            ln.get("rel", "alternate") == "alternate" for ln in entry.findall("a:link", ns)
        ):
            problems.append(f"{where}: neither content nor an alternate link")
        if content is not None and content.get("type") not in ("text", "html", "xhtml"):
            problems.append(f"{where}: content type {content.get('type')!r}")
        for link in entry.findall("a:link", ns):
            if not _absolute(link.get("href")):
                problems.append(f"{where}: link href is not absolute")
            kind = link.get("type")
            if kind is not None and not MIME_TYPE.match(kind):
                problems.append(f"{where}: link type {kind!r} is not a MIME type")
            length = link.get("length")
            if length is not None and not _non_negative(length):
                problems.append(f"{where}: link length {length!r} is not a non-negative integer")
        alternates = [
            (link.get("type"), link.get("hreflang"))
            for link in entry.findall("a:link", ns)
            if link.get("rel", "alternate") == "alternate"
        ]
        if len(alternates) != len(set(alternates)):
            problems.append(f"{where}: two alternate links of one type and language")
        for author in entry.findall("a:author", ns):
            problems += [f"{where}: {p}" for p in _atom_person_problems(author)]
    return problems + _feedparser_problems(body)


def _non_negative(value: str) -> bool:
    return value.strip().isdigit()


def _rss_author_problems(item: etree._Element) -> list[str]:
    """The validator's rules for an item's <author> (an "email (Name)") and dc:creator."""
    problems: list[str] = []
    authors = item.findall("author")
    if len(authors) > 1:
        problems.append("more than one <author>")
    if authors and item.find(f"{{{DC}}}creator") is not None:
        problems.append("both <author> and dc:creator")
    for author in authors:
        value = _text(author).strip()
        if "@" not in value:
            problems.append("<author> must be an email address (use dc:creator)")
            continue
        if not value.endswith(")"):
            problems.append(f"<author> {value!r} is not 'email (Real Name)'")
            continue
        addresses = getaddresses([value])
        if len(addresses) != 1 or not ADDR_SPEC.match(addresses[0][1]) or not addresses[0][0]:
            problems.append(f"<author> {value!r} is not 'email (Real Name)'")
    for creator in item.findall(f"{{{DC}}}creator"):
        if not _text(creator).strip():
            problems.append("empty dc:creator")
    return problems


def _rss_enclosure_problems(item: etree._Element) -> list[str]:
    """The validator's rules for <enclosure>: one per item, url, length and type."""
    enclosures = item.findall("enclosure")
    problems = ["more than one <enclosure>"] if len(enclosures) > 1 else []
    for enclosure in enclosures:
        url, length, kind = (enclosure.get(a) for a in ("url", "length", "type"))
        if url is None or not HTTP_URL.match(url) or not FULL_URI.match(url):
            problems.append(f"enclosure url {url!r} is not an http URL")
        if length is None or not re.fullmatch(r"-?\d+", length.strip()):
            problems.append(f"enclosure length {length!r} is not an integer")
        elif int(length) < 0:
            problems.append(f"enclosure length {length} is negative (use 0 for unknown)")
        if kind is None or not MIME_TYPE.match(kind):
            problems.append(f"enclosure type {kind!r} is not a MIME type")
    return problems


def _atom_person_problems(person: etree._Element) -> list[str]:
    ns = {"a": ATOM}
    problems: list[str] = []
    if not _text(person.find("a:name", ns)).strip():
        problems.append("author without a name")
    email = person.find("a:email", ns)
    if email is not None and not ADDR_SPEC.match(_text(email)):
        problems.append(f"author email {_text(email)!r} is not an addr-spec")
    uri = person.find("a:uri", ns)
    if uri is not None and not _absolute(_text(uri)):
        problems.append(f"author uri {_text(uri)!r} is not an absolute URL")
    return problems


def check_json(body: bytes, self_url: str | None = None) -> list[str]:
    document = json.loads(body)
    problems = [
        e.message for e in jsonschema.Draft202012Validator(JSON_FEED_SCHEMA).iter_errors(document)
    ]
    ids = [item["id"] for item in document.get("items", [])]
    if len(ids) != len(set(ids)):
        problems.append("duplicate item ids")
    if self_url is not None and document.get("feed_url") != self_url:
        problems.append(f"feed_url is {document.get('feed_url')!r}, not {self_url!r}")
    return problems


def _feedparser_problems(body: bytes) -> list[str]:
    parsed = feedparser.parse(body)
    if parsed.bozo:
        return [f"feedparser: {parsed.bozo_exception}"]
    return []


CHECKERS = {"rss": check_rss, "atom": check_atom, "json": check_json}


def check(kind: str, body: bytes, self_url: str | None = None) -> list[str]:
    """The problems of a feed document of the given format."""
    return CHECKERS[kind](body, self_url)
