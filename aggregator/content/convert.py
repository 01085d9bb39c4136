"""Pure conversion: a parsed entry becomes an article (identity, front matter, body, name).

Nothing here touches disk or the network; the store decides what to write.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml

from aggregator.content.clean import (
    TAG,
    Cleaned,
    CleanOptions,
    clean_html,
    is_http,
    is_tracker,
    sanitise,
    strip_tracking,
)
from aggregator.content.fulltext import MIN_SHARE, Extraction
from aggregator.models import Article, Enclosure, ParsedEntry

SUMMARY_CHARS = 280
TITLE_CHARS = 1000  # a longer title is cut (a 1 MB title is an attack, not a headline)
DERIVED_TITLE_CHARS = 80  # a title made from an untitled entry's text, ellipsis included
FUTURE_SLACK = timedelta(days=1)  # how far ahead of the poll a feed's date may be
MAX_NAME_BYTES = 200  # a whole file name, ".md" included: safe on ext4, NTFS, APFS
_SUFFIX_BYTES = 9  # "-" and eight hex digits
# A key longer than this (UTF-8 bytes) is kept as its digest (``bounded_key``): with its
# source's name it must fit a B-tree entry, which on PostgreSQL holds 2,704 bytes at most.
MAX_KEY_BYTES = 1000

DateStyle = Literal["rfc822", "iso8601"]  # how front matter dates are written
AuthorStyle = Literal["site", "entry"]  # what front matter's `author` is


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How article files are written (from ``settings.front_matter``)."""

    date_style: DateStyle = "rfc822"
    timezone: str = "UTC"  # zone for iso8601 dates; rfc822 is always GMT
    escape_braces: bool = True  # { } as &#123; &#125; in the body, for Hexo/Jekyll templates
    comments: bool = False  # the seed's `comments: false`
    author: AuthorStyle = "site"  # `author:` is the site (the seed), or the entry's byline


@dataclass(frozen=True, slots=True)
class SourceView:
    """What conversion needs to know about the entry's source."""

    name: str
    categories: tuple[str, ...]  # section › site › feed
    author: str  # the site's name, written as the article's author
    cleaning: CleanOptions  # its removal selectors and iframe hosts
    max_entries: int = 500  # entries of one document converted at most (newest first)


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


def entry_key(entry: ParsedEntry) -> str:
    """Identity of an entry inside its source: guid, else link, else a content hash (a
    guid or link over ``MAX_KEY_BYTES``: its digest, ``bounded_key``)."""
    if entry.guid and entry.guid.strip():
        return bounded_key(entry.guid.strip())
    if entry.link and entry.link.strip():
        return bounded_key(entry.link.strip())
    date = entry.published or entry.updated
    stamp = date.isoformat() if date else ""
    return "sha1:" + _digest(entry.title, stamp, entry.content_html)


def bounded_key(key: str) -> str:
    """``key``, or ``sha256:`` and its hex digest when it is over ``MAX_KEY_BYTES``.

    The `(source, key)` unique index could not hold a long key that does not compress
    (a 10 KB random guid): on PostgreSQL the insert failed, and with it every poll of the
    source. A digest is as stable an identity, and short enough for any index. Revision
    0003 gave the entries stored before this their digest keys, spelled as here.
    """
    raw = key.encode("utf-8")
    if len(raw) <= MAX_KEY_BYTES:
        return key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def alt_key(entry: ParsedEntry) -> str:
    """Identity used when the feed gives one key to several different items."""
    return entry_key(entry) + "#" + _digest(entry.link or "", entry.title)[:12]


@dataclass(frozen=True, slots=True)
class Kept:
    """One entry of a document, the version kept when the feed repeats it."""

    article: Article  # the version kept
    #: The alt keys of every version the document gives, the kept one's first: an
    #: earlier poll may have stored the entry under any of them.
    alt_keys: tuple[str, ...]


def keep_one_per_entry(articles: Sequence[Article]) -> tuple[list[Kept], list[str]]:
    """One article per entry of a document, and a warning per repeated key.

    The same key is the same entry (Atom §4.2.6: revisions of an entry share its id),
    except in feeds that give one key to different items (a constant RSS guid): versions
    of a key whose titles differ and whose links differ (or are missing) are different
    items, kept apart (``assign_keys`` gives them their alt keys). Of the versions of an
    entry, the one kept is the newest (``updated``, else ``published``) among those with
    a body, and of equals the last in the document.

    Returns:
        The entries, in the order they first appear; the warnings.
    """
    items: dict[str, list[list[int]]] = {}  # key → its items → their versions' positions
    for position, article in enumerate(articles):
        groups = items.setdefault(article.key, [])
        joined = [g for g in groups if any(_same_item(article, articles[i]) for i in g)]
        for group in joined[1:]:  # it links two items seen apart so far: they are one
            joined[0].extend(group)
            groups.remove(group)
        if joined:
            joined[0].append(position)
        else:
            groups.append([position])
    kept: list[tuple[int, Kept]] = []
    warnings: list[str] = []
    for key, groups in items.items():
        if len(groups) > 1:
            warnings.append(
                f"id {key!r} is given to {len(groups)} different items (their titles and "
                "links differ): kept apart"
            )
        for group in groups:
            group.sort()
            best = group[0]
            if len(group) > 1:
                best = max(group, key=lambda i: _completeness(articles[i], i))
                warnings.append(
                    f"id {key!r} appears {len(group)} times in the document; kept the "
                    f"{_which(articles, group, best)} ({articles[best].title[:60]!r})"
                )
            alts = dict.fromkeys([articles[best].alt_key, *(articles[i].alt_key for i in group)])
            kept.append((group[0], Kept(articles[best], tuple(alts))))
    kept.sort(key=lambda pair: pair[0])
    return [k for _, k in kept], warnings


def _same_item(a: Article, b: Article) -> bool:
    return a.title == b.title or (a.link is not None and a.link == b.link)


_NO_DATE = datetime.min.replace(tzinfo=UTC)


def has_body(article: Article) -> bool:
    """True when an article shows something: text, an image, a player or a frame."""
    html = article.body_html
    return bool(TAG.sub("", html).strip()) or any(
        f"<{tag}" in html for tag in ("img", "video", "audio", "iframe")
    )


def _completeness(article: Article, position: int) -> tuple[bool, datetime, int]:
    return (has_body(article), article.updated or article.published or _NO_DATE, position)


def _which(articles: Sequence[Article], group: Sequence[int], best: int) -> str:
    """How the kept version was chosen, in words."""
    if best == group[-1]:
        return "last"
    later = [articles[i] for i in group if i > best]
    if not any(has_body(a) for a in later):
        return "last with a body"
    return "newest"


def assign_keys(
    entries: Sequence[tuple[str, Sequence[str]]], stored: Mapping[str, str]
) -> list[str]:
    """Choose each entry's key so that ids stay apart and never change.

    An entry keeps its plain key unless the feed gives that key to several different
    items in one document (see ``keep_one_per_entry``), or the entry was once stored
    under one of its alternative keys (it was part of such a repeat before, or an
    earlier version stored each repeat of one entry apart). Among items sharing a key,
    the one stored under the plain key keeps it (recognised by its recorded alt key); if
    none is stored, the first item takes it.

    Args:
        entries: (key, alt keys) per entry, in document order; the first alt key is the
            one a new alternative identity takes.
        stored: for each of those keys and alt keys already in the store, the alt key
            recorded for the entry stored under it.

    Returns:
        The key to store each entry under, in the same order.
    """
    counts: dict[str, int] = {}
    for key, _ in entries:
        counts[key] = counts.get(key, 0) + 1
    taken: set[str] = set()
    chosen: list[str] = []
    for key, alts in entries:
        recorded = next((alt for alt in alts if alt in stored), None)
        if recorded is not None:
            choice = recorded
        elif counts[key] == 1:
            choice = key
        elif key in taken:
            choice = alts[0]
        elif key in stored:
            choice = key if stored[key] in alts else alts[0]
        else:
            choice = key
        taken.add(choice)
        chosen.append(choice)
    return chosen


def entry_uid(source_name: str, key: str) -> str:
    """The global, permanent id of an entry (used in front matter and feeds)."""
    return _digest(source_name, key)[:24]


def convert_entry(
    entry: ParsedEntry, source: SourceView, now: datetime, page: Extraction | None = None
) -> Article:
    """Clean an entry and gather everything its article file and feeds need.

    ``now`` is the time of the poll (or rebuild): a date more than a day ahead of it is
    not trusted (``trusted_date``). ``page`` is the main content of the entry's web page
    (full text): its cleaned HTML becomes the body unless it is empty or much shorter than
    the feed's own (``fulltext.MIN_SHARE``); the raw original stays the feed's entry.
    """
    cleaned = clean_html(entry.content_html, _base(entry.content_base, entry.link), source.cleaning)
    feed_text = cleaned.text
    body_from, body_note = "feed", None
    if page is not None:
        cleaned, body_from, body_note = _page_or_feed(cleaned, page, source)
    if entry.summary_html and entry.summary_html != entry.content_html:
        summary_text = clean_html(
            entry.summary_html, _base(entry.summary_base, entry.link), source.cleaning
        ).text
    else:
        summary_text = feed_text or cleaned.text
    title = entry.title.strip() or derive_title(feed_text or cleaned.text or summary_text)
    if len(summary_text) > SUMMARY_CHARS:
        summary_text = summary_text[: SUMMARY_CHARS - 1].rstrip() + "…"
    raw_json = entry.to_json()
    key = entry_key(entry)
    return Article(
        key=key,
        alt_key=alt_key(entry),
        raw_json=raw_json,
        raw_hash=_digest(raw_json),
        title=_cut_title(title),
        link=_web_link(entry.link),
        categories=source.categories,
        author=source.author,
        published=trusted_date(entry.published, now),
        updated=trusted_date(entry.updated, now),
        headimg=pick_image(entry.images, cleaned.images),
        tags=entry.tags,
        summary=summary_text,
        body_html=cleaned.html,
        authors=entry.authors,
        # Web addresses only, as for the link: front matter reaches a theme's templates.
        enclosures=tuple(e for e in entry.enclosures if is_http(e.url)),
        body_from=body_from,
        body_note=body_note,
    )


def _page_or_feed(
    feed: Cleaned, page: Extraction, source: SourceView
) -> tuple[Cleaned, str, str | None]:
    """The body to keep, where it came from, and why the page's was not taken."""
    if page.html is None:
        return feed, "feed", page.reason or "no main content found on the page"
    from_page = clean_html(page.html, page.url if is_http(page.url) else None, source.cleaning)
    if not from_page.text:
        return feed, "feed", "the page's main content is empty once cleaned"
    if len(from_page.text) < MIN_SHARE * len(feed.text):
        return (
            feed,
            "feed",
            (
                f"the page's main content ({len(from_page.text)} characters) is much shorter "
                f"than the feed's own ({len(feed.text)})"
            ),
        )
    return from_page, "page", None


def _base(own: str | None, link: str | None) -> str | None:
    """The URL relative references in a body are resolved against.

    The body's own base as feedparser computed it (the innermost ``xml:base`` around it,
    else the document's ``Content-Location`` or URL: XML Base §4.2, RFC 3986 §5.1, Atom
    §2); else, for raw entries stored before bases were kept, the entry's link.
    """
    for candidate in (own, link):
        if candidate and is_http(candidate):
            return candidate
    return None


def trusted_date(value: datetime | None, now: datetime) -> datetime | None:
    """A feed's date, or None when it is more than a day ahead of ``now``.

    A date in the future (a wrong clock, a year 2103 placeholder) would otherwise sit at
    the top of every feed until then; without one, the entry is dated when first seen.
    A day of slack allows for a publisher whose clock or time zone is a little off.
    """
    if value is None or value > now + FUTURE_SLACK:
        return None
    return value


def untrusted_dates(entry: ParsedEntry, now: datetime) -> str | None:
    """What ``trusted_date`` refuses of an entry's dates, as a warning for the poll."""
    refused = [
        f"{name} {value.isoformat()}"
        for name, value in (("published", entry.published), ("updated", entry.updated))
        if value is not None and trusted_date(value, now) is None
    ]
    if not refused:
        return None
    poll = now.isoformat(timespec="seconds")
    return f"dates more than a day after the poll ({poll}) not trusted: {', '.join(refused)}"


# Han, kana, CJK punctuation and full-width forms: text in these scripts has no spaces,
# so a title may be cut between any two of their characters. (Hangul has spaces.)
_CJK = re.compile(
    r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
    r"\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)
# The end of the first sentence: Western punctuation before a space and no lower-case
# letter (not "e.g. this"), or CJK punctuation anywhere.
_SENTENCE_END = re.compile(r"[.!?…](?=\s+[^\sa-z]|$)|[。！？]")


def derive_title(text: str) -> str:
    """A title for an entry that has none, from the first words of its text.

    The first sentence when it fits in ``DERIVED_TITLE_CHARS``; else the text cut to
    fit, on a word boundary or between CJK characters, with an ellipsis. '' for no text.
    """
    text = " ".join(text[: DERIVED_TITLE_CHARS * 4].split())  # the start is enough
    for end in _SENTENCE_END.finditer(text):
        if end.end() > DERIVED_TITLE_CHARS:
            break
        sentence = text[: end.end()]
        if any(c.isalnum() for c in sentence):  # not a lone "!" or "…" first
            return sentence.rstrip(".。")
    if len(text) <= DERIVED_TITLE_CHARS:
        return text
    limit = DERIVED_TITLE_CHARS - 1  # room for the ellipsis
    cut = limit
    while cut > limit // 2 and not _boundary(text, cut):
        cut -= 1
    if cut == limit // 2:  # one very long word (a URL): cut it
        cut = limit
    return text[:cut].rstrip(" ,;:-–—、，；：") + "…"


def _boundary(text: str, at: int) -> bool:
    """True when ``text`` may be cut before ``text[at]``: a space, or a CJK character."""
    before, after = text[at - 1], text[at]
    return after == " " or before == " " or bool(_CJK.match(before) or _CJK.match(after))


def _cut_title(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def _web_link(link: str | None) -> str | None:
    # Only web links: a feed's "javascript:" or "data:" link must not reach a page.
    link = (link or "").strip()
    return strip_tracking(link) if is_http(link) else None


def pick_image(declared: Sequence[str], in_body: Sequence[str]) -> str:
    """The header image: the feed's declared images first, else the body's first photo."""
    for url in (*declared, *in_body):
        if url.startswith(("http://", "https://")) and not is_tracker(url):
            return strip_tracking(url)
    return ""


# -- front matter ------------------------------------------------------------------------


class _Quoted(str):
    """A string written in single quotes, as the seed writes titles and image URLs."""

    __slots__ = ()


class _FrontMatterDumper(yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper):  # type: ignore[misc]
    pass


def _represent_quoted(dumper: yaml.SafeDumper, data: _Quoted) -> yaml.ScalarNode:
    # The emitter falls back to double quotes when single quotes cannot hold the text.
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="'")


_FrontMatterDumper.add_representer(_Quoted, _represent_quoted)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _yaml_text(value: str) -> str:
    # YAML cannot carry C0/C1 controls or lone surrogates in any style; they are never
    # meaningful in a title, so they go (a YAML library would otherwise refuse to load).
    return _CONTROL.sub("", value)


def format_date(value: datetime, options: RenderOptions) -> str:
    """Write a UTC time in the configured style, never the feed's raw string."""
    if options.date_style == "iso8601":
        return value.astimezone(ZoneInfo(options.timezone)).isoformat()
    return format_datetime(value.astimezone(UTC), usegmt=True)


def front_matter(article: Article, uid: str, date: datetime, options: RenderOptions) -> str:
    """Render the YAML front matter, keys in the seed's order, extras after them."""
    byline = _yaml_text(_cut_title(article.byline))
    author = byline if options.author == "entry" and byline else article.author
    data: dict[str, Any] = {
        "title": _Quoted(_yaml_text(article.title)),
        "categories": [_yaml_text(c) for c in article.categories],
        "headimg": _Quoted(article.headimg),
        "author": _yaml_text(author),
        "comments": options.comments,
        "date": format_date(date, options),
        "thumbnail": _Quoted(article.headimg),
    }
    if article.updated and article.updated != article.published:
        data["updated"] = format_date(article.updated, options)
    if article.link:
        data["link"] = _yaml_text(article.link)
    if article.tags:
        data["tags"] = [_yaml_text(t) for t in article.tags]
    if byline:
        # Not "authors": Jekyll's jekyll-feed and jekyll-seo-tag read `author`/`authors`
        # as keys into site.data.authors, and Hugo sites often make `authors` a
        # taxonomy (a page per name). No generator gives `byline` a meaning: themes
        # read it as plain page data.
        data["byline"] = byline
    if article.enclosures:
        data["enclosures"] = [_enclosure_data(e) for e in article.enclosures]
    data["entry_id"] = uid
    text: str = yaml.dump(
        data,
        Dumper=_FrontMatterDumper,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
        width=1_000_000,
    )
    return text


def _enclosure_data(enclosure: Enclosure) -> dict[str, Any]:
    # As the feed gave it: no type or length made up.
    data: dict[str, Any] = {"url": _yaml_text(enclosure.url)}
    if enclosure.type:
        data["type"] = _yaml_text(enclosure.type)
    if enclosure.length is not None:
        data["length"] = enclosure.length
    return data


def text_hash(text: str) -> str:
    """The hash recorded for an article file's content (did the file change?)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def media_players(enclosures: Sequence[Enclosure], poster: str = "") -> str:
    """An ``<audio>`` or ``<video>`` player for each audio or video enclosure ('' when
    there is none), as the sanitiser lets it through: http(s) sources only, no autoplay.

    Args:
        poster: the image a video shows before it plays (the header image), if any.
    """
    players: list[str] = []
    for enclosure in enclosures:
        kind = enclosure.media_type
        tag = kind.split("/", 1)[0]
        if tag not in ("audio", "video") or not is_http(enclosure.url):
            continue
        source = f'<source src="{html.escape(enclosure.url)}" type="{html.escape(kind)}">'
        still = f' poster="{html.escape(poster)}"' if tag == "video" and is_http(poster) else ""
        # preload="none": a page of episodes must not start downloading every one.
        players.append(f'<p><{tag} controls preload="none"{still}>{source}</{tag}></p>')
    return sanitise("".join(players)) if players else ""


def render_article(article: Article, uid: str, date: datetime, options: RenderOptions) -> str:
    """The whole article file: front matter, then the cleaned body and its players."""
    body = article.body_html
    player = media_players(article.enclosures, article.headimg)
    if player:
        # Inside the body's one <div>, on lines of their own: still one raw HTML block.
        inner = body.removesuffix("</div>")
        body = f"{inner}\n{player}\n</div>" if inner != body else f"{body}\n{player}"
    if options.escape_braces:
        body = body.replace("{", "&#123;").replace("}", "&#125;")
    return f"---\n{front_matter(article, uid, date, options)}---\n\n{body}\n"


# -- file names --------------------------------------------------------------------------

_UNSAFE = re.compile(r'[/\\:*?"<>|#%\x00-\x1f\x7f-\x9f]+|[\s\u3000]+')
_DASHES = re.compile(r"-{2,}")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.I)


def _cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def safe_segment(name: str, limit: int = MAX_NAME_BYTES, fallback: str = "untitled") -> str:
    """Make one path segment safe on every filesystem and in a URL path.

    No separators, reserved punctuation, control characters or whitespace runs (they
    become "-"), no leading dot or dash, no trailing dot, not a Windows device name,
    at most ``limit`` bytes of UTF-8, cut on a character boundary.
    """
    text = unicodedata.normalize("NFC", name)
    text = _UNSAFE.sub("-", text)
    text = _DASHES.sub("-", text).strip("-. ")
    text = _cut_utf8(text, limit).rstrip("-. ")
    if not text:
        text = fallback
    if _RESERVED.match(text):
        text = "_" + text
    return text


def article_name(title: str, suffix: str | None = None) -> str:
    """The file name for an article; ``suffix`` (from its id) tells namesakes apart."""
    stem = safe_segment(title, MAX_NAME_BYTES - len(".md") - _SUFFIX_BYTES)
    if suffix:
        stem = f"{stem}-{suffix[:8]}"
    return stem + ".md"


_ASCII_OTHER = re.compile(r"[^a-z0-9]+")


class _Keep(dict[int, int | None]):
    """A ``str.translate`` table that keeps the characters of some Unicode categories and
    drops the rest; each character's entry is made the first time it is met."""

    def __init__(self, letters: str, categories: frozenset[str]) -> None:
        super().__init__()
        self.letters = letters  # first letters of the categories kept whole ("L", "M")
        self.categories = categories  # and single categories kept ("Nd")

    def __missing__(self, code: int) -> int | None:
        category = unicodedata.category(chr(code))
        kept = category[0] in self.letters or category in self.categories
        self[code] = code if kept else None
        return self[code]


# Letters, decimal digits and marks: what Hugo keeps of a name, and Jekyll the letters and
# digits. Marks go only at the end, once case folding had its say on them (ypogegrammeni).
_KEPT_BY_EVERY_GENERATOR = _Keep("LM", frozenset({"Nd"}))
_LETTERS_AND_DIGITS = _Keep("L", frozenset({"Nd"}))


def fold_name(name: str) -> str:
    """A name reduced to what tells it apart as a page URL and on every file system.

    Two names with one fold can end up as one page, the other silently lost: Hugo keeps
    of a name only letters, digits, marks and ``._#+~%-``, spaces as "-", lower-cased
    (helpers/path.go ``UnicodeSanitize``; its ``removePathAccents`` drops accents too);
    Jekyll's slugs turn every run of other characters into one "-" and lower-case; Hexo's
    ``filename_case`` lower-cases; macOS and Windows compare names without case, macOS
    without NFC/NFD. The fold keeps only what all of them keep, the letters and decimal
    digits, caseless (Unicode's compatibility caseless match) and without accents. So it
    maps together everything any of them maps together, and more: a needless suffix is
    harmless, a lost article is not.
    """
    if name.isascii():  # the common case, the same result as below
        return _ASCII_OTHER.sub("", name.lower())
    text = unicodedata.normalize("NFD", name).translate(_KEPT_BY_EVERY_GENERATOR)
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text.casefold()).casefold())
    return text.translate(_LETTERS_AND_DIGITS)


@functools.lru_cache(maxsize=4096)  # a poll folds each new name when choosing and storing it
def fold_path(path: str, *, extension: bool = True) -> str:
    """The fold of a path under the posts folder: each part folded (``fold_name``), the
    file's extension left out, so ``a.md``, someone's ``A.html`` and a folder ``a`` (a Hugo
    page bundle) have one fold.

    Args:
        path: "/"-separated, relative to the posts folder.
        extension: False when the last part is a folder's name (nothing to leave out).
    """
    *folders, name = path.split("/")
    stem, dot, _ = name.rpartition(".")
    if extension and dot and stem:
        name = stem
    return "/".join([*(fold_name(f) for f in folders), fold_name(name)])


def article_dir(categories: Sequence[str]) -> tuple[str, ...]:
    """The folders under the posts folder for a category path."""
    return tuple(safe_segment(c, 100, "uncategorised") for c in categories)
