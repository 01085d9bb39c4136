"""What the web layer derives from a configuration, once per configuration.

Each value walks every source or the whole config, too slow to redo per request; a
``WebView`` holds them all for one configuration, and ``CurrentView`` makes a new one
when a reload brought a new configuration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import quote

from aggregator.config import Config, split_host
from aggregator.content.selection import Selection

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
WILDCARD = ("", "0.0.0.0", "::", "[::]")


def bind_name(config: Config) -> str | None:
    """The address the server listens on, as written in a Host header; None: any."""
    bind = config.settings.server.host.lower()
    if bind in WILDCARD:
        return None
    return f"[{bind}]" if ":" in bind else bind


def trusted_hosts(config: Config) -> frozenset[tuple[str, int | None]]:
    """(name, port or None) of the Host headers self links may be built from."""
    names = [*LOOPBACK, *config.settings.server.trusted_hosts, bind_name(config) or ""]
    return frozenset(parsed for parsed in map(split_host, names) if parsed is not None)


def feed_links(config: Config) -> tuple[tuple[str, str, str], ...]:
    """(label, path without format, category) for every feed: all, each category level,
    each output. ``category``: the overview's ``?category=`` of its sources ("" for
    all and the outputs)."""
    links = [("All", "/feeds/all", "")]
    for levels in sorted(config.categories()):
        category = "/".join(levels)
        links.append((" › ".join(levels), "/feeds/" + quote(category), category))
    for output in config.outputs:
        links.append((output.title or output.name, "/outputs/" + quote(output.name), ""))
    return tuple(links)


@dataclass(frozen=True, slots=True)
class WebView:
    """What the web layer derives from one configuration, computed when it comes in
    force (each walks every source: too slow to redo per request)."""

    config: Config
    fingerprint: str  # a reload (titles, rules, outputs) makes every rendered feed stale
    categories: frozenset[tuple[str, ...]]  # every level of the category tree
    trusted_hosts: frozenset[tuple[str, int | None]]  # Host headers self links may use
    feed_links: tuple[tuple[str, str, str], ...]  # the dashboard's list of feeds
    feed_search: tuple[str, ...]  # each feed link's label and path, lowercase, to search
    # The base URL of self links by the request's Host, server name and port, scheme and
    # root (``feeds.base_url``): worked out once, not on every feed request.
    bases: dict[tuple[object, ...], str] = field(default_factory=dict, compare=False)
    # The category feeds' selections by path (``feeds.category_feed``), made once each.
    selections: dict[str, Selection | None] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, config: Config) -> WebView:
        """The view of ``config``."""
        links = feed_links(config)
        fingerprint = hashlib.sha1(config.model_dump_json().encode()).hexdigest()[:16]
        return cls(
            config=config,
            fingerprint=fingerprint,
            categories=frozenset(config.categories()),
            trusted_hosts=trusted_hosts(config),
            feed_links=links,
            feed_search=tuple(f"{label}\n{path}".lower() for label, path, _ in links),
        )

    def feeds_matching(self, search: str) -> tuple[tuple[str, str, str], ...]:
        """The feed links whose label or path holds ``search`` (case-insensitive).

        A loop over the feeds, not the sources: there is one per category level and
        output, a few thousand at most where the sources are a hundred thousand.
        """
        if not search:
            return self.feed_links
        needle = search.lower()
        return tuple(
            link
            for link, text in zip(self.feed_links, self.feed_search, strict=True)
            if needle in text
        )


class CurrentView:
    """The ``WebView`` of the configuration in force.

    The only place that notices a new configuration: the service swaps its own on a
    reload, and the first request after it builds the new view. Two requests racing
    there both build it; either result is the same, and the last one is kept.
    """

    def __init__(self, config: Config) -> None:
        self._view = WebView.of(config)

    def of(self, config: Config) -> WebView:
        """The view of ``config``, built now if it is not the one in force so far."""
        view = self._view
        if view.config is not config:
            view = self._view = WebView.of(config)
        return view
