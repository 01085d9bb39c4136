"""Feed discovery, the pure part: which URLs of a web page may be its feeds.

A site's home page names its feeds with ``<link rel="alternate" type="application/rss+xml"
href="…">`` (the HTML Living Standard's "alternate" link type, with the feed's media type);
many pages name none, and their feed is at a well-known path (``/feed`` for WordPress,
``/index.xml`` for Hugo, ``/atom.xml`` for Hexo and Jekyll). This module reads a page's
bytes and lists both kinds of candidate; fetching them and checking that each parses as a
feed is the caller's job (``aggregator.poll.discovery``). It also turns the titles found
into a default category path. No I/O: bytes and URLs in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.etree

from aggregator.content.encoding import decode_text, normalise_label

#: Media types of ``<link rel="alternate">`` that name a feed on their own.
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",  # RSS 1.0
        "application/feed+json",  # JSON Feed 1.1
    }
)
#: Media types that name a feed only when the link says so (WordPress names its REST API
#: as an ``application/json`` alternate of every page; JSON Feed 1.0 used that type).
LOOSE_TYPES = frozenset({"application/json", "application/xml", "text/xml"})
_FEED_WORD = re.compile(r"feed|rss|atom", re.I)

#: Where feeds are when a page names none: WordPress, Ghost, Hugo, Hexo, Jekyll, and
#: the common ``feed.json``. Tried in this order, under the page's folder first.
COMMON_PATHS = ("feed", "rss.xml", "atom.xml", "index.xml", "feed.xml", "feed.json", "rss")

#: Longest title kept as a category name (characters; a CJK one is two columns wide).
TITLE_LIMIT = 80

Via = Literal["url", "link", "path"]  # the URL given, a <link rel=alternate>, a common path

_CHARSET_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARSER = lxml.etree.HTMLParser(
    remove_comments=True, remove_pis=True, no_network=True, recover=True
)


@dataclass(frozen=True, slots=True)
class FeedLink:
    """A URL that may be a feed, and what the page said of it."""

    url: str  # absolute
    title: str = ""  # the link's title attribute, if any
    type: str = ""  # the link's media type, if any


@dataclass(frozen=True, slots=True)
class Page:
    """What an HTML page says about its site and its feeds."""

    url: str  # where the page came from (after redirects)
    title: str  # its <title>
    site_name: str  # og:site_name or application-name, if given
    links: tuple[FeedLink, ...]  # its feed alternates, in document order, no repeats


@dataclass(frozen=True, slots=True)
class FoundFeed:
    """A URL checked to be a feed: fetched once and parsed."""

    url: str  # the URL to subscribe to (as found, before any redirect)
    title: str  # the feed's own title (may be empty)
    site: str | None  # the site the feed says it belongs to
    entries: int  # how many entries it has now
    via: Via  # how it was found


@dataclass(frozen=True, slots=True)
class Discovery:
    """The feeds found for a URL: the URL itself, or its page's feeds."""

    url: str  # the URL asked about
    site_title: str  # the page's site name or title ("" when the URL is a feed)
    feeds: tuple[FoundFeed, ...]  # at least one
    #: Candidates that were tried and are no feed, each with the reason (for -v and the
    #: error when nothing is found).
    tried: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddedSource:
    """A source written to the config."""

    name: str  # its name (the given one, else its last category)
    url: str
    categories: tuple[str, ...]


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """True for an HTML page (by its media type, else by how it starts)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml"):
        return True
    if media and media not in ("text/plain", "application/octet-stream"):
        return False  # an XML or JSON type: let the feed parser judge it
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _decode(body: bytes, content_type: str | None) -> str:
    """The page's text: the header's charset, else a ``<meta charset>``, else the rules
    feeds are decoded by (UTF-8, then a guess)."""
    if not (content_type and "charset" in content_type.lower()):
        found = _CHARSET_META.search(body[:4096])
        label = normalise_label(found.group(1).decode("ascii")) if found else None
        if label is not None:
            return body.decode(label, errors="replace")
    return decode_text(body, content_type).text


def clean_title(text: str | None, limit: int = TITLE_LIMIT) -> str:
    """A title fit to be a category name: one line, no '/', at most ``limit`` characters.

    '/' separates levels of a category path, so it becomes the full-width '／', which reads
    the same (as ``import-opml`` does). Whitespace of every kind, the ideographic space
    included, is collapsed.
    """
    words = _CONTROL.sub(" ", text or "").split()
    return " ".join(words).replace("/", "／")[:limit].rstrip()


def _is_feed_link(rel: str, media: str, href: str, title: str) -> bool:
    if "alternate" not in rel.lower().split():
        return False
    if media in FEED_TYPES:
        return True
    return media in LOOSE_TYPES and bool(_FEED_WORD.search(f"{href} {title}"))


def read_page(body: bytes, url: str, content_type: str | None = None) -> Page:
    """The title, site name and feed links of an HTML page.

    Relative hrefs are resolved against the page's ``<base href>`` (itself resolved against
    the page's URL), else its URL; only http(s) results are kept.

    Args:
        body: the page's bytes as fetched.
        url: where it came from, after redirects.
        content_type: the HTTP Content-Type, if any (its charset wins).
    """
    text = _decode(body, content_type).replace("\x00", "")
    try:
        root = lxml.etree.fromstring(text, _PARSER) if text.strip() else None
    except (lxml.etree.ParserError, ValueError):
        root = None
    if root is None:
        return Page(url, "", "", ())
    base = url
    for element in root.iter("base"):
        href = (element.get("href") or "").strip()
        if href:
            base = urljoin(url, href)
            break
    links: list[FeedLink] = []
    seen: set[str] = set()
    for element in root.iter("link"):
        href = (element.get("href") or "").strip()
        media = (element.get("type") or "").split(";", 1)[0].strip().lower()
        title = clean_title(element.get("title"), 200)
        if not href or not _is_feed_link(element.get("rel") or "", media, href, title):
            continue
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme not in ("http", "https") or absolute in seen:
            continue
        seen.add(absolute)
        links.append(FeedLink(absolute, title, media))
    titles = [t.text or "" for t in root.iter("title")]
    site_name = ""
    for element in root.iter("meta"):
        key = (element.get("property") or element.get("name") or "").strip().lower()
        if key in ("og:site_name", "application-name") and (element.get("content") or "").strip():
            site_name = clean_title(element.get("content"), 200)
            break
    return Page(url, clean_title(titles[0] if titles else "", 200), site_name, tuple(links))


def common_feed_urls(url: str) -> tuple[tuple[str, ...], ...]:
    """The well-known feed URLs for a page, by level: under its folder, then at the root.

    ``https://example.com/blog/post.html`` gives ``/blog/feed``, ``/blog/rss.xml``, …, then
    ``/feed``, ``/rss.xml``, …; a page at the root gives the root's alone.
    """
    parts = urlsplit(url)
    folder = parts.path.rsplit("/", 1)[0] + "/" if "/" in parts.path else "/"
    levels: list[tuple[str, ...]] = []
    for prefix in dict.fromkeys([folder, "/"]):
        levels.append(
            tuple(
                urlunsplit((parts.scheme, parts.netloc, prefix + p, "", "")) for p in COMMON_PATHS
            )
        )
    return tuple(levels)


def default_categories(feed_title: str, site_title: str, url: str) -> tuple[str, ...]:
    """A category path for a feed added without one: the site, then the feed.

    One level, the feed's title, when the two titles are the same or one holds the other:
    a blog's feed bears its name ("Example Blog" on a page titled "Example Blog – notes"),
    and a second feed of the site says what it is ("Example Blog » Comments"), so the
    feed's title names both and two feeds of a site get two names. With no titles at all,
    the URL's host.
    """
    feed = clean_title(feed_title)
    site = clean_title(site_title)
    host = clean_title(urlsplit(url).hostname or url)
    if not feed or not site:
        return (feed or site or host,)
    a, b = feed.casefold(), site.casefold()
    if a in b or b in a:
        return (feed,)
    return (site, feed)
