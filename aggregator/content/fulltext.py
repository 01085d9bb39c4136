"""Pure full-text extraction: an entry's web page in, its main content's HTML out.

The page is the one the entry links to, fetched (and stored raw) by ``poll/pages.py``.
readability-lxml finds the main content (a port of Readability.js, the algorithm behind
Firefox Reader View: it keeps the page's own HTML, images, links and tables, which our
cleaner then sanitises); a source's ``full_text_selector`` takes exactly that element
instead of guessing (Miniflux's scraper rules). Whether the result replaces the feed's
body is ``convert_entry``'s choice (``MIN_SHARE``). No I/O here: bytes in, HTML out.
"""

from __future__ import annotations

import codecs
import logging
import re
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import lxml.etree
import lxml.html
from readability import Document

from aggregator.content.clean import Element, compile_selector

#: An extraction whose text is shorter than this share of the feed's own body text is
#: not used: the feed's body is then the better one (a teaser page, a paywall, a page
#: the extractor misread).
MIN_SHARE = 0.5

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
# Content types read as HTML; anything else (a PDF, an image, JSON) is not a page.
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")

# readability-lxml logs every candidate at INFO; one article is not worth a screenful.
logging.getLogger("readability.readability").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Page:
    """An entry's web page as fetched (what the store keeps, raw)."""

    url: str  # the final URL after redirects: the base of relative links
    body: bytes
    content_type: str = ""  # the Content-Type header as sent, '' when none


@dataclass(frozen=True, slots=True)
class Extraction:
    """The main content of a page, or why there is none."""

    url: str  # the page's URL: relative links in ``html`` resolve against it
    html: str | None  # the main content's HTML (not yet cleaned); None: see ``reason``
    reason: str | None = None  # why nothing was extracted


def extract_page(page: Page, selector: str | None = None) -> Extraction:
    """The main content of ``page``: the element ``selector`` matches, else readability's
    guess. Never raises for bad input; a failure is an ``Extraction`` with a reason."""
    kind = page.content_type.split(";", 1)[0].strip().lower()
    if kind not in _HTML_TYPES:
        return Extraction(page.url, None, f"not an HTML page ({kind})")
    if not page.body.strip():
        return Extraction(page.url, None, "the page is empty")
    text = _decode(page)
    try:
        if selector is not None:
            return _select(page.url, text, selector)
        html = Document(text, url=page.url).summary(html_partial=True)
    except Exception as exc:  # a hostile page must not stop its feed
        return Extraction(page.url, None, f"extraction failed: {type(exc).__name__}: {exc}")
    if not _has_text(html):
        return Extraction(page.url, None, "no main content found on the page")
    return Extraction(page.url, html)


def _decode(page: Page) -> str:
    """The page as text: the header's charset; else UTF-8 when the bytes are valid UTF-8
    (a saved or re-served page often keeps a <meta> naming the encoding it once had);
    else the charset its <meta> names; else UTF-8 with replacement characters."""
    body = page.body.removeprefix(b"\xef\xbb\xbf")
    for part in page.content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            with suppress(LookupError):
                return body.decode(codecs.lookup(value.strip(" \"'")).name, "replace")
    with suppress(UnicodeDecodeError):
        return body.decode("utf-8")
    declared = _META_CHARSET.search(body[:4096])
    if declared:
        with suppress(LookupError):
            return body.decode(codecs.lookup(declared.group(1).decode("ascii")).name, "replace")
    return body.decode("utf-8", "replace")


def _select(url: str, text: str, selector: str) -> Extraction:
    root = lxml.html.document_fromstring(text.replace("\x00", ""))
    found = [e for e in cast(list[Any], compile_selector(selector)(root)) if isinstance(e, Element)]
    if not found:
        return Extraction(url, None, f"full_text_selector {selector!r} matched nothing")
    html = str(lxml.etree.tostring(found[0], encoding="unicode", method="html"))
    if not _has_text(html):
        return Extraction(url, None, f"full_text_selector {selector!r} matched an empty element")
    return Extraction(url, html)


def _has_text(html: str) -> bool:
    try:
        return bool(lxml.html.fragment_fromstring(html, create_parent="div").text_content().strip())
    except (lxml.etree.ParserError, ValueError):
        return False
