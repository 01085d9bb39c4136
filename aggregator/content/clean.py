"""Pure HTML cleaning: structural removals on an lxml tree, then an allow-list sanitiser.

Two passes, each doing what it is best at:

1. lxml (fast C tree): drop whole elements with their content (scripts, styles, forms,
   promos named by per-source CSS selectors, iframes from hosts not allowed, tracking
   pixels), turn lazy images into real ones, resolve relative URLs, strip tracking query
   parameters, and pick the candidate header images.
2. nh3 (Rust, ammonia): the allow-list sanitiser, once. Everything not allowed goes:
   event handlers, ``style``, ``javascript:``/``data:`` URLs, unknown tags (their text kept).

Finally the HTML is laid out for Markdown: no blank line anywhere and no indented line,
so CommonMark (Hexo's marked, Hugo's goldmark, kramdown) reads the whole body as one raw
HTML block and never turns indentation into a code block (CommonMark §4.6, §4.4).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import lxml.etree
import nh3
from cssselect import SelectorError
from lxml.cssselect import CSSSelector

# Removed with everything inside them.
DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "form",
    "input",
    "button",
    "select",
    "textarea",
    "object",
    "embed",
    "applet",
    "frame",
    "frameset",
    "link",
    "meta",
    "base",
    "svg",
    "math",
    "canvas",
    "dialog",
)

ALLOWED_TAGS = frozenset(
    (
        "a abbr audio b bdi bdo blockquote br caption cite code col colgroup dd del "
        "details dfn div dl dt em figcaption figure h1 h2 h3 h4 h5 h6 hr i iframe img ins "
        "kbd li mark ol p pre q rp rt ruby s samp small source span strong sub summary "
        "sup table tbody td tfoot th thead time tr u ul var video wbr "
    ).split()
)

ALLOWED_ATTRIBUTES = {
    "*": {"lang", "dir", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "iframe": {"src", "width", "height", "allowfullscreen"},
    # Players: what one needs and no more (no autoplay, no event handlers); their
    # src and poster must be http(s) (see MEDIA_TAGS).
    "video": {"src", "poster", "controls", "preload", "width", "height"},
    "audio": {"src", "controls", "preload"},
    "source": {"src", "type"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start", "reversed"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "time": {"datetime"},
}

_SANITISER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
    # Hot-linked images (Sina, WeChat, Weibo…) refuse requests that carry a foreign Referer.
    set_tag_attribute_values={
        "img": {"referrerpolicy": "no-referrer"},
        "iframe": {"referrerpolicy": "no-referrer"},
    },
)

# Attributes that lazy-loading scripts put the real image URL in, most specific first.
LAZY_SRC_ATTRIBUTES = (
    "data-src",
    "data-original",
    "data-lazy-src",
    "data-actualsrc",
    "data-url",
    "data-echo",
    "data-hi-res-src",
)
_PLACEHOLDER = re.compile(
    r"(^data:)|blank\.gif|spacer\.gif|placeholder|loading\.(gif|svg)|/lazy", re.I
)

# Query parameters that only identify the click, never the resource.
_TRACKING_PARAM = re.compile(
    r"^(utm_\w+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|yclid|mc_cid|mc_eid|_hsenc|_hsmi|"
    r"igshid|mkt_tok|oly_anon_id|oly_enc_id|vero_id|wt_mc|spm|__twitter_impression)$",
    re.I,
)
# Image URLs that are counters, not pictures.
_TRACKER_URL = re.compile(
    r"feeds\.feedburner\.com/~r/|feedburner\.com/~ff/|pixel\.wp\.com|stats\.wordpress\.com|"
    r"pixel\.quantserve\.com|doubleclick\.net|google-analytics\.com|/pixel(\.gif|\.png)?(\?|$)|"
    r"/track(ing)?/open|/beacon(\.gif)?(\?|$)|feedsportal\.com|feedblitz\.com/.*\.gif",
    re.I,
)

# Their src (and a video's poster) must be an absolute http(s) URL: nh3's URL schemes
# also let mailto: and relative URLs through, which a player cannot play.
MEDIA_TAGS = ("audio", "video", "source")

_NEWLINE_RUN = re.compile(r"[ \t\r\f]*\n[ \t\r\n\f]*")
_PRE = re.compile(r"<pre\b.*?</pre>", re.S | re.I)


Element = lxml.etree._Element


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The result of cleaning one HTML body."""

    html: str  # sanitised, laid out for Markdown, wrapped in one <div>
    images: tuple[str, ...]  # absolute http(s) image URLs in document order, trackers excluded
    text: str  # the visible text, whitespace collapsed (for summaries and search)


class CleanOptions:
    """How one source's bodies are cleaned besides the fixed rules: compiled once.

    Args:
        remove: CSS selectors whose matches are removed with their content.
        iframe_hosts: host names whose iframes (video players) are kept.
    """

    __slots__ = ("_selectors", "iframe_hosts", "remove")

    def __init__(self, remove: Sequence[str] = (), iframe_hosts: Iterable[str] = ()) -> None:
        self.remove = tuple(remove)
        self.iframe_hosts = frozenset(h.lower() for h in iframe_hosts)
        for selector in self.remove:
            compile_selector(selector)  # each one valid on its own, or a clear error
        # One XPath union for all of them: one pass over the tree, not one per selector.
        self._selectors = compile_selector(", ".join(self.remove)) if self.remove else None

    def matches(self, root: Element) -> list[Element]:
        """Return the elements under ``root`` that the removal selectors match."""
        if self._selectors is None:
            return []
        return cast(list[Element], self._selectors(root))

    def __reduce__(self) -> tuple[type[CleanOptions], tuple[tuple[str, ...], frozenset[str]]]:
        # Compiled selectors do not pickle; worker processes recompile (cached).
        return (CleanOptions, (self.remove, self.iframe_hosts))


@lru_cache(maxsize=512)
def compile_selector(selector: str) -> CSSSelector:
    """Compile a CSS selector for lxml.

    Raises:
        ValueError: the selector is not valid CSS (the message says why).
    """
    try:
        return CSSSelector(selector, translator="html")
    except SelectorError as exc:
        raise ValueError(f"invalid CSS selector {selector!r}: {exc}") from exc


def strip_tracking(url: str) -> str:
    """Remove click-tracking query parameters (utm_*, fbclid, …) from a URL."""
    if "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if not _TRACKING_PARAM.match(k)]
    if len(kept) == len(query):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _host(url: str) -> str:
    # Browsers read "\\" as "/" and ignore userinfo: "https://evil\\@www.youtube.com/" is
    # evil's page to a browser but youtube's to urlsplit. Such URLs have no host for us.
    if not is_http(url) or "\\" in url or "@" in url or any(ord(c) < 33 for c in url):
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # e.g. "http://[::1": not a URL any browser would load
        return ""


TAG = re.compile(r"<[^>]*>")  # an HTML tag, for quick text extraction


def text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, its blank-line paragraphs as ``<p>``, lines as ``<br>``."""
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs if p)


def is_http(url: str) -> bool:
    """True for an absolute http(s) URL."""
    return url.startswith(("http://", "https://"))


def _pixel_size(value: str | None) -> int | None:
    if value is None:
        return None
    match = re.match(r"\s*(\d+)", value)
    return int(match.group(1)) if match else None


def is_tracker(src: str, width: str | None = None, height: str | None = None) -> bool:
    """True for a tracking pixel: a 0/1-pixel image or a known counter URL."""
    w, h = _pixel_size(width), _pixel_size(height)
    if (w is not None and w <= 1) or (h is not None and h <= 1):
        return True
    return bool(_TRACKER_URL.search(src))


def _best_from_srcset(srcset: str) -> str | None:
    best: tuple[float, str] | None = None
    for candidate in srcset.split(","):
        bits = candidate.strip().split()
        if not bits:
            continue
        weight = 1.0
        if len(bits) > 1 and bits[1][:-1].replace(".", "", 1).isdigit():
            weight = float(bits[1][:-1])
        if best is None or weight > best[0]:
            best = (weight, bits[0])
    return best[1] if best else None


def _fix_lazy_image(img: Element) -> None:
    src = (img.get("src") or "").strip()
    if src and not _PLACEHOLDER.search(src):
        return
    for attribute in LAZY_SRC_ATTRIBUTES:
        value = (img.get(attribute) or "").strip()
        if value and not value.startswith("data:"):
            img.set("src", value)
            return
    for attribute in ("srcset", "data-srcset"):
        best = _best_from_srcset(img.get(attribute) or "")
        if best:
            img.set("src", best)
            return


def _drop(element: Element) -> None:
    """Remove an element and its content, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _unwrap(element: Element) -> None:
    """Remove an element, keeping what it holds (text, children, tail) in its place.

    For a void element HTML 4's parser does not know (``<source>``): libxml2 nests what
    follows an unclosed one inside it, so dropping it would drop its next siblings too.
    """
    parent = element.getparent()
    if parent is None:
        return
    index = parent.index(element)
    previous = element.getprevious()
    if element.text:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.text
        else:
            parent.text = (parent.text or "") + element.text
    children = list(element)
    tail, element.tail = element.tail, None
    parent.remove(element)
    for offset, child in enumerate(children):
        parent.insert(index + offset, child)
    if tail:
        last = children[-1] if children else previous
        if last is not None:
            last.tail = (last.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


# Plain lxml.etree elements: lxml.html's element classes cost a Python call per element.
_PARSER = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)


def _parse_fragment(html: str) -> Element:
    root: Element | None = None
    with suppress(lxml.etree.ParserError, ValueError):
        document = lxml.etree.fromstring(html.replace("\x00", ""), _PARSER)
        if document is not None:
            root = document.find("body")
    if root is None:
        # Empty input, or only a <head> (e.g. a lone <style>): an empty body.
        root = lxml.etree.Element("div")
    root.tag = "div"
    root.attrib.clear()
    return root


_BLOCKS = frozenset(
    "address article aside blockquote br dd details div dl dt figcaption figure footer "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table td th tr ul".split()
)


def _visible_text(root: Element) -> str:
    """The text of a tree, with a space where block elements meet (not inside words)."""
    parts: list[str] = []
    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        block = element.tag in _BLOCKS
        if event == "start":
            if block:
                parts.append(" ")
            if element.text:
                parts.append(element.text)
        else:
            if block:
                parts.append(" ")
            if element.tail and element is not root:
                parts.append(element.tail)
    return "".join(parts)


def _layout(html: str) -> str:
    # Inside <pre>, newlines are content: keep them as character references so the
    # block stays on one line and no line of it can end the HTML block.
    html = _PRE.sub(lambda m: m.group(0).replace("\r\n", "\n").replace("\n", "&#10;"), html)
    return _NEWLINE_RUN.sub("\n", html).strip()


def sanitise(html: str) -> str:
    """Only the allow-list's tags, attributes and URL schemes of an HTML fragment: the
    last pass of ``clean_html``, for HTML we build ourselves (it must pass it too)."""
    result: str = _SANITISER.clean(html)
    return result


# Elements whose URLs are resolved; of them, those whose only URL is ``cite``.
_CITING = ("blockquote", "q", "del", "ins")
_LINKING = ("a", "img", "iframe", "video", "audio", "source", *_CITING)


def clean_html(
    html: str, base_url: str | None = None, options: CleanOptions | None = None
) -> Cleaned:
    """Clean one entry body.

    Args:
        html: the body as the feed gave it.
        base_url: the URL relative URLs are resolved against (the body's base).
        options: the source's removal selectors and iframe allow-list.

    Returns:
        The sanitised HTML laid out for Markdown, the usable images, and the text.
    """
    options = options or CleanOptions()
    root = _parse_fragment(html)
    doomed: list[Element] = list(root.iter(*DROP_TAGS))
    doomed.extend(options.matches(root))
    for node in doomed:
        _drop(node)

    base = base_url if base_url and is_http(base_url) else None

    def absolute(url: str) -> str:
        url = url.strip()
        if base is None or not url or is_http(url) or url.startswith(("data:", "mailto:")):
            return url
        try:
            return urljoin(base, url)
        except ValueError:  # e.g. an invalid IPv6 host: leave it for the sanitiser
            return url

    images: list[str] = []
    for element in list(root.iter(*_LINKING)):
        tag = element.tag
        if tag in _CITING:
            cite = element.get("cite")
            if cite:
                element.set("cite", absolute(cite))
            continue
        if tag == "a":
            href = element.get("href")
            if href:
                element.set("href", strip_tracking(absolute(href)))
            continue
        if tag == "img":
            _fix_lazy_image(element)
        src = absolute(element.get("src") or "")
        if tag == "iframe":
            if _host(src) not in options.iframe_hosts:
                _drop(element)
                continue
        elif tag == "img":
            if not src or is_tracker(src, element.get("width"), element.get("height")):
                _drop(element)
                continue
            src = strip_tracking(src)
            if is_http(src):
                images.append(src)
        elif tag in MEDIA_TAGS and not is_http(src):
            if tag == "source":
                _unwrap(element)  # a source is nothing but its src
                continue
            src = ""
            element.attrib.pop("src", "")
        if src:
            element.set("src", src)
        if tag == "video" and element.get("poster") is not None:
            poster = absolute(element.get("poster") or "")
            if is_http(poster):
                element.set("poster", poster)
            else:
                del element.attrib["poster"]

    text = " ".join(_visible_text(root).split())
    serialised = lxml.etree.tostring(root, method="html", encoding="unicode")
    sanitised = _SANITISER.clean(serialised)
    return Cleaned(html=_layout(sanitised), images=tuple(images), text=text)
