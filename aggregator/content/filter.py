"""Pure keep/block rules: one rule language for ingest and for published outputs.

A rule is written in YAML as::

    - block: 广告              # or `keep:`; the keyword or the regular expression
      field: title            # title, summary, content, author, link, tags, category, any
                              # (author: any of the entry's authors, else the site)
      match: keyword          # keyword (substring) or regex
      case: false             # true: case-sensitive

Keywords match as substrings after Unicode NFKC folding and case folding, so full-width
and half-width forms, and upper and lower case, match alike (and CJK text, which has no
word boundaries, is matched as it is written). An entry is dropped by the first block
rule that matches; if a list has keep rules, an entry that matches none of them is
dropped too.

Regular expressions run on RE2 (google-re2), whose matching time is linear in the text:
with Python's backtracking ``re``, one rule such as ``(a+)+$`` against a long title
froze the whole process (ingest rules run under the store lock, output rules on every
feed request). RE2 has no backreferences, lookarounds or atomic groups; such a rule is
refused when the config is checked, with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import quote, urlencode

import re2

from aggregator.content.clean import TAG
from aggregator.models import Person

# The rule language's words, written once: the config validates against these.
Action = Literal["keep", "block"]
RuleField = Literal["title", "summary", "content", "author", "link", "tags", "category", "any"]
Match = Literal["keyword", "regex"]
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|br|li|h[1-6]|tr|td|th|blockquote|pre|ul|ol|dl|dt|dd|table|section|article|"
    r"figure|figcaption|hr)\b[^>]*>",
    re.I,
)


def _text_of(html: str) -> str:
    # Block tags separate words; inline tags do not ("<b>ＦＵＬＬ</b>-width" is one word).
    return TAG.sub("", _BLOCK_TAG.sub(" ", html))


class Filterable(Protocol):
    """What a rule can look at (an Article, or a stored entry)."""

    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def body_html(self) -> str: ...
    @property
    def author(self) -> str: ...
    @property
    def authors(self) -> tuple[Person, ...]: ...
    @property
    def link(self) -> str | None: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def categories(self) -> tuple[str, ...]: ...


def fold(text: str) -> str:
    """Normalise text for keyword matching: NFKC (full-width → half-width), casefold."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled keep or block rule."""

    action: Action
    pattern: str
    field: RuleField = "title"
    match: Match = "keyword"
    case: bool = False  # case-sensitive

    def __post_init__(self) -> None:
        if self.match == "regex":
            self.compiled()  # raises ValueError for an invalid expression

    def compiled(self) -> Searcher:
        """The regular expression (regex rules only).

        Raises:
            ValueError: RE2 cannot compile the pattern; the message says why.
        """
        try:
            return _compile(self.pattern, self.case)
        except re2.error as exc:
            raise ValueError(
                f"invalid regular expression {self.pattern!r}: {_re2_reason(exc)}"
            ) from exc

    def describe(self) -> str:
        """How the audit names this rule."""
        verb = "matches" if self.match == "regex" else "contains"
        case = " (case-sensitive)" if self.case else ""
        return f"{self.action} {self.field} {verb} {self.pattern!r}{case}"

    def matches(self, item: Filterable) -> bool:
        """True when the rule's pattern is found in the item's field."""
        values = _values(item, self.field)
        if self.match == "regex":
            expression = self.compiled()
            return any(expression.search(v) for v in values)
        if self.case:
            return any(self.pattern in v for v in values)
        needle = fold(self.pattern)
        return any(needle in fold(v) for v in values)


class Searcher(Protocol):
    """A compiled RE2 expression (google-re2 ships no type hints)."""

    def search(self, text: str) -> object | None: ...


_CACHE: dict[tuple[str, bool], Searcher] = {}

# What RE2 refuses that Python's re accepts, by the start of RE2's message.
_UNSUPPORTED = (
    (("invalid escape sequence: \\k", "invalid perl operator: (?P"), "backreferences"),
    (tuple(f"invalid escape sequence: \\{d}" for d in range(1, 10)), "backreferences"),
    (
        tuple(f"invalid perl operator: {op}" for op in ("(?=", "(?!", "(?<=", "(?<!")),
        "lookahead and lookbehind",
    ),
    (
        ("invalid perl operator: (?>", *(f"bad repetition operator: {q}+" for q in "*+?")),
        "atomic groups and possessive quantifiers",
    ),
)


def _compile(pattern: str, case: bool) -> Searcher:
    key = (pattern, case)
    compiled = _CACHE.get(key)
    if compiled is None:
        options = re2.Options()
        options.case_sensitive = case
        options.log_errors = False  # the error is raised, and reported with its line
        compiled = re2.compile(pattern, options)
        if len(_CACHE) < 4096:
            _CACHE[key] = compiled
    return compiled


def _re2_reason(exc: Exception) -> str:
    """RE2's message, plus what it means for a pattern written for Python's re."""
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for starts, feature in _UNSUPPORTED:
        if message.startswith(starts):
            return (
                f"{message} ({feature} are not supported: rules use RE2 syntax, which "
                "matches in linear time)"
            )
    if message.startswith("invalid escape sequence: \\Z"):
        return f"{message} (write \\z for the end of the text)"
    return message


def _values(item: Filterable, field: str) -> Sequence[str]:
    if field == "title":
        return (item.title,)
    if field == "summary":
        return (item.summary,)
    if field == "content":
        return (_text_of(item.body_html),)
    if field == "author":
        # The entry's byline: any of its authors; the site for an entry that names none.
        return tuple(p.label for p in item.authors) or (item.author,)
    if field == "link":
        return (item.link or "",)
    if field == "tags":
        return item.tags
    if field == "category":
        return (*item.categories, " › ".join(item.categories))
    return (item.title, item.summary, _text_of(item.body_html))


def verdict(rules: Iterable[Rule], item: Filterable) -> str | None:
    """None when the item is kept; otherwise the description of why it is dropped."""
    keeps: list[Rule] = []
    for rule in rules:
        if rule.action == "keep":
            keeps.append(rule)
        elif rule.matches(item):
            return rule.describe()
    if keeps and not any(rule.matches(item) for rule in keeps):
        return "no keep rule matched (" + "; ".join(r.describe() for r in keeps) + ")"
    return None


@dataclass(frozen=True, slots=True)
class Query:
    """A feed request's filters (its query string), validated."""

    q: str | None = None  # keyword that must appear (title, summary or content)
    exclude: str | None = None  # keyword that must not appear
    author: str | None = None  # keyword that must appear in the byline (else the site)
    since: datetime | None = None  # only entries dated at or after this time
    limit: int = 50

    def key(self) -> tuple[object, ...]:
        """A hashable form, for caches."""
        return (self.q, self.exclude, self.author, self.since, self.limit)

    def query_string(self, default_limit: int) -> str:
        """The canonical query string ("" or "?…") of a feed's self link.

        Built from the parsed values, never from the request: a cached feed is shared by
        every request with the same filters, so the first one's unknown parameters or
        spelling of a date must not show in everyone's self link.
        """
        pairs = [(n, v) for n, v in (("q", self.q), ("exclude", self.exclude)) if v is not None]
        if self.author is not None:
            pairs.append(("author", self.author))
        if self.since is not None:
            pairs.append(("since", self.since.isoformat().replace("+00:00", "Z")))
        if self.limit != default_limit:
            pairs.append(("limit", str(self.limit)))
        return "?" + urlencode(pairs, quote_via=quote) if pairs else ""

    def matches(self, item: Filterable) -> bool:
        """True when the item passes the keyword filters (the date is filtered in SQL)."""
        if self.q is not None and not Rule("keep", self.q, "any").matches(item):
            return False
        if self.exclude is not None and Rule("block", self.exclude, "any").matches(item):
            return False
        return self.author is None or Rule("keep", self.author, "author").matches(item)


class QueryError(ValueError):
    """A query parameter is invalid; the message says which and why."""


_PARAMETERS = ("q", "exclude", "author", "since", "limit")


def parse_query(pairs: Iterable[tuple[str, str]], default_limit: int, max_limit: int) -> Query:
    """Validate a feed request's query parameters (the first of a repeated one counts).

    Args:
        pairs: every (name, value) of the query string, decoded, unknown names too.

    Raises:
        QueryError: a control character anywhere, or a parameter that is empty, too long,
            or not of its type.
    """
    values: dict[str, str] = {}
    for name, raw in pairs:
        if _has_control_character(name + raw):
            raise QueryError(f"parameter {name!r} contains a control character")
        if name not in _PARAMETERS or name in values:
            continue  # unknown parameters are ignored (and never shown in self links)
        value = raw.strip()
        if not value:
            raise QueryError(f"parameter {name!r} is empty")
        if len(value) > 200:
            raise QueryError(f"parameter {name!r} is longer than 200 characters")
        values[name] = value
    limit = default_limit
    if "limit" in values:
        limit = _parse_limit(values["limit"], max_limit)
    since = _parse_since(values["since"]) if "since" in values else None
    return Query(values.get("q"), values.get("exclude"), values.get("author"), since, limit)


def _has_control_character(text: str) -> bool:
    # Raw or percent-encoded, a control character is no keyword and no XML character.
    return any(unicodedata.category(c) == "Cc" for c in text)


def _parse_limit(value: str, max_limit: int) -> int:
    # ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= max_limit:
        raise QueryError(f"limit must be a whole number from 1 to {max_limit}")
    return int(value)


def _parse_since(value: str) -> datetime:
    try:
        since = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(
            "since must be an ISO 8601 date or time, e.g. 2024-05-01 or 2024-05-01T08:00:00+08:00"
        ) from exc
    if since.tzinfo is None:
        return since.replace(tzinfo=UTC)
    try:
        return since.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise QueryError(f"since is out of range in UTC: {value}") from exc


def in_selection(item: Filterable, tags: Sequence[str]) -> bool:
    """True when the item has one of ``tags`` (folded), or ``tags`` is empty."""
    if not tags:
        return True
    wanted = {fold(t) for t in tags}
    return any(fold(t) in wanted for t in item.tags)
