"""Each source's settings, resolved once per configuration: pure, no I/O.

A source's effective settings are its own merged with the global ones: the removal selectors
and iframe hosts its articles are cleaned with, its ingest rules, its retention, and the
render key (a fingerprint of everything besides the entry that shapes its article
file). The poll, the rebuild, the prune and the rules' dry run all read them from one
``ResolvedSource``, made once per source and configuration (``Poller.resolved``, when the
source is first polled), so they can never disagree on them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from aggregator import __version__
from aggregator.config import Config, SourceConfig
from aggregator.content.clean import CleanOptions
from aggregator.content.convert import RenderOptions, SourceView, article_dir
from aggregator.content.filter import Rule
from aggregator.poll.fetch import NO_OPTIONS, FetchOptions


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """One source's effective settings under one configuration."""

    #: The source as configured.
    config: SourceConfig
    #: What conversion needs to know about it (categories, author, cleaning options).
    view: SourceView
    #: How its article files are written (the global front matter settings).
    options: RenderOptions
    #: Its ingest rules: the global ones, then its own.
    rules: tuple[Rule, ...]
    #: Entries older than this many days are not kept (None: no limit).
    keep_days: int | None
    #: At most this many entries are kept (None: no limit).
    keep_max: int | None
    #: A fingerprint of everything, besides the entry, that shapes its article file.
    render_key: str
    #: The folder of its article files, relative to the posts folder.
    folder: str
    #: Fetch each new entry's page and take its body from there (``full_text``).
    full_text: bool = False
    #: The CSS selector of the page's body element; None: the extractor finds it.
    full_text_selector: str | None = None
    #: Its own headers, login, User-Agent and proxy (none: the global fetch settings).
    fetch: FetchOptions = NO_OPTIONS

    @property
    def name(self) -> str:
        """The source's name (its key in the index)."""
        return self.config.key


def render_options(config: Config) -> RenderOptions:
    """How article files are written, from ``settings.front_matter``."""
    front = config.settings.front_matter
    return RenderOptions(
        date_style=front.date_style,
        timezone=front.timezone,
        escape_braces=front.escape_braces,
        comments=front.comments,
        author=front.author,
    )


def resolve_source(
    config: Config, source: SourceConfig, options: RenderOptions | None = None
) -> ResolvedSource:
    """Merge a source's own settings with the global ones."""
    settings = config.settings
    options = options or render_options(config)
    view = SourceView(
        name=source.key,
        categories=source.categories,
        author=source.site,
        cleaning=CleanOptions((*settings.remove, *source.remove), settings.iframe_hosts),
        max_entries=settings.fetch.max_entries,
    )
    rules = tuple(r.rule() for r in (*settings.rules, *source.rules))
    return ResolvedSource(
        config=source,
        view=view,
        options=options,
        rules=rules,
        keep_days=source.keep_days or settings.keep_days,
        keep_max=source.keep_max or settings.keep_max,
        render_key=_render_key(view, options, rules),
        folder="/".join(article_dir(view.categories)),
        full_text=settings.full_text if source.full_text is None else source.full_text,
        full_text_selector=source.full_text_selector,
        fetch=fetch_options(source),
    )


def fetch_options(source: SourceConfig) -> FetchOptions:
    """The fetcher's view of a source's fetch options, secrets in clear (only it sends them)."""
    return FetchOptions(
        headers=tuple((name, value.get_secret_value()) for name, value in source.headers),
        username=source.username.get_secret_value() if source.username else None,
        password=source.password.get_secret_value() if source.password else None,
        user_agent=source.user_agent,
        proxy=source.proxy.get_secret_value() if source.proxy else None,
    )


def _render_key(view: SourceView, options: RenderOptions, rules: tuple[Rule, ...]) -> str:
    facts = [
        __version__,
        options.date_style,
        options.timezone,
        options.escape_braces,
        options.comments,
        options.author,
        view.categories,
        view.author,
        view.cleaning.remove,
        sorted(view.cleaning.iframe_hosts),
        [r.describe() for r in rules],
    ]
    return hashlib.sha1(json.dumps(facts, ensure_ascii=False).encode()).hexdigest()[:16]
