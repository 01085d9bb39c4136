"""Pure keep/block rules: one rule language for ingest and for published outputs.

A rule is written in YAML as::

    - block: 广告              # or `keep:`; the keyword or the regular expression
      field: title            # title, summary, content, author, link, tags, category, any
      match: keyword          # keyword (substring) or regex
      case: false             # true: case-sensitive

Keywords match as substrings after Unicode NFKC folding and case folding, so full-width
and half-width forms, and upper and lower case, match alike (and CJK text, which has no
word boundaries, is matched as it is written). An entry is dropped by the first block
rule that matches; if a list has keep rules, an entry that matches none of them is
dropped too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Field = Literal["title", "summary", "content", "author", "link", "tags", "category", "any"]
FIELDS: tuple[str, ...] = (
    "title",
    "summary",
    "content",
    "author",
    "link",
    "tags",
    "category",
    "any",
)
_TAG = re.compile(r"<[^>]*>")


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

    action: Literal["keep", "block"]
    pattern: str
    field: Field = "title"
    match: Literal["keyword", "regex"] = "keyword"
    case: bool = False  # case-sensitive

    def __post_init__(self) -> None:
        if self.match == "regex":
            self.compiled()  # raises ValueError for an invalid expression

    def compiled(self) -> re.Pattern[str]:
        """The regular expression (regex rules only)."""
        try:
            return _compile(self.pattern, self.case)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from exc

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


_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def _compile(pattern: str, case: bool) -> re.Pattern[str]:
    key = (pattern, case)
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = re.compile(pattern, 0 if case else re.IGNORECASE)
        if len(_CACHE) < 4096:
            _CACHE[key] = compiled
    return compiled


def _values(item: Filterable, field: str) -> Sequence[str]:
    if field == "title":
        return (item.title,)
    if field == "summary":
        return (item.summary,)
    if field == "content":
        return (_TAG.sub(" ", item.body_html),)
    if field == "author":
        return (item.author,)
    if field == "link":
        return (item.link or "",)
    if field == "tags":
        return item.tags
    if field == "category":
        return (*item.categories, " › ".join(item.categories))
    return (item.title, item.summary, _TAG.sub(" ", item.body_html))


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
