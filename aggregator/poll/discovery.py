"""Adding a source: find a URL's feeds, check them, and write the chosen one to the config.

The I/O around ``content.discover``: every request goes through the project's ``Fetcher``
(its timeouts, size cap, per-host limit and private-address rule, as for polls), each
candidate is fetched once and parsed with ``parse_feed``, and the config file is edited
by ``yamledit`` (comments and order kept, validated before it replaces the file). Used
by ``aggregator add`` and, through the ``SourceAdder`` protocol of ``web.state``, by the
dashboard's "Add source" form.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aggregator.config import Config, Settings
from aggregator.content.discover import (
    AddedSource,
    Discovery,
    FoundFeed,
    Via,
    common_feed_urls,
    default_categories,
    looks_like_html,
    read_page,
)
from aggregator.content.parse import parse_feed
from aggregator.errors import AggregatorError, FetchError, ParseError
from aggregator.poll.fetch import Fetched, Fetcher
from aggregator.redact import redact
from aggregator.yamledit import append_source

MAX_LINKS = 12  # alternates checked per page: a page may list a feed per tag


class DiscoveryError(AggregatorError):
    """No feed was found at a URL, or the one asked for is not a feed."""


def make_fetcher(settings: Settings) -> Fetcher:
    """A fetcher with the limits polls have (the config's ``fetch`` and ``per_host``)."""
    return Fetcher(
        settings.fetch.timeout,
        settings.fetch.max_bytes,
        settings.fetch.user_agent,
        per_host=settings.schedule.per_host,
        block_private=settings.fetch.block_private_addresses,
        file_roots=settings.fetch.file_roots,
    )


def normalise_url(url: str) -> str:
    """A URL as typed, made absolute: ``example.com`` means ``https://example.com/``.

    Raises:
        DiscoveryError: not an http(s) URL.
    """
    url = url.strip()
    if "://" not in url and url and not url.startswith("/"):
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DiscoveryError(f"not an http(s) URL: {redact(url)!r}")
    return url if parts.path else urlunsplit(parts._replace(path="/"))


def _as_feed(fetched: Fetched, url: str, via: Via) -> FoundFeed:
    """The fetched document as a feed, to subscribe to at ``url``, or where a permanent
    redirect on the way said it has moved (a poll would only suggest that edit later).

    Raises:
        ParseError: it is not one.
    """
    feed = parse_feed(fetched.url, fetched.body, fetched.headers)
    return FoundFeed(fetched.moved_to or url, feed.title, feed.link, len(feed.entries), via)


def check_feed(fetcher: Fetcher, url: str, via: Via = "url") -> FoundFeed:
    """Fetch ``url`` once and parse it.

    Raises:
        DiscoveryError: it cannot be fetched or is not a feed (the reason redacted).
    """
    try:
        fetched = fetcher.fetch(url)
        if looks_like_html(fetched.body, fetched.headers.get("content-type")):
            raise ParseError(url, "an HTML page, not a feed")
        return _as_feed(fetched, url, via)
    except (FetchError, ParseError) as exc:
        raise DiscoveryError(redact(str(exc))) from exc


def _try(fetcher: Fetcher, urls: Iterable[str], via: Via, tried: list[str]) -> list[FoundFeed]:
    """The URLs that are feeds; one per distinct document (``/feed`` and ``/rss`` are
    often the same)."""
    found: list[FoundFeed] = []
    bodies: set[str] = set()
    for url in urls:
        try:
            fetched = fetcher.fetch(url)
            if looks_like_html(fetched.body, fetched.headers.get("content-type")):
                raise ParseError(url, "an HTML page, not a feed")
            feed = _as_feed(fetched, url, via)
        except (FetchError, ParseError) as exc:
            tried.append(redact(str(exc)))
            continue
        digest = hashlib.sha1(fetched.body).hexdigest()
        if digest not in bodies:
            bodies.add(digest)
            found.append(feed)
    return found


def discover(fetcher: Fetcher, url: str) -> Discovery:
    """The feeds of ``url``: itself if it is a feed, else its page's alternates, else the
    common paths that answer with a feed.

    Raises:
        DiscoveryError: the URL cannot be fetched, or no feed was found (with what was
            tried).
    """
    try:
        fetched = fetcher.fetch(url)
    except FetchError as exc:
        raise DiscoveryError(redact(str(exc))) from exc
    content_type = fetched.headers.get("content-type")
    if not looks_like_html(fetched.body, content_type):
        try:
            return Discovery(url, "", (_as_feed(fetched, url, "url"),))
        except ParseError as exc:
            raise DiscoveryError(
                f"{redact(url)} is neither a feed nor an HTML page ({exc.message})"
            ) from exc
    page = read_page(fetched.body, fetched.url, content_type)
    site_title = page.site_name or page.title
    tried: list[str] = []
    feeds = _try(fetcher, [link.url for link in page.links[:MAX_LINKS]], "link", tried)
    if not feeds:  # none named, or none of those named answers: the common paths
        for level in common_feed_urls(fetched.url):
            feeds = _try(fetcher, level, "path", tried)
            if feeds:
                break
    if not feeds:
        said = (
            f"none of its {len(page.links)} feed link(s) is a feed"
            if page.links
            else 'it names no feed (<link rel="alternate">)'
        )
        said += " and none of the common paths (/feed, /rss.xml, /atom.xml, /index.xml, …) is one"
        raise DiscoveryError(f"no feed found at {redact(url)}: {said}")
    return Discovery(url, site_title, tuple(feeds), tuple(tried))


class SourceAdder:
    """Discovers feeds and adds one to the config file, one edit at a time.

    Args:
        config_path: the config file to edit.
        config: the configuration in force (its fetch settings are used).
        after_write: called once the file is replaced (the service reloads it).
    """

    def __init__(
        self,
        config_path: str | Path,
        config: Callable[[], Config],
        after_write: Callable[[], object] | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.config = config
        self.after_write = after_write
        self._lock = threading.Lock()  # two admins adding at once: one edit after the other

    def discover(self, url: str) -> Discovery:
        """The feeds of ``url`` (see ``discover``); raises DiscoveryError."""
        fetcher = make_fetcher(self.config().settings)
        try:
            return discover(fetcher, normalise_url(url))
        finally:
            fetcher.close()

    def check(self, url: str) -> FoundFeed:
        """Fetch ``url`` once and parse it; raises DiscoveryError when it is no feed."""
        fetcher = make_fetcher(self.config().settings)
        try:
            return check_feed(fetcher, normalise_url(url))
        finally:
            fetcher.close()

    def add(
        self,
        feed: FoundFeed,
        *,
        site_title: str = "",
        categories: tuple[str, ...] | None = None,
        name: str | None = None,
    ) -> AddedSource:
        """Write ``feed`` to the config as a new source.

        Args:
            site_title: the site's name, for the default category path.
            categories: the category path; default: from the site's and feed's titles.
            name: the source's name; default: its last category.

        Raises:
            DuplicateSourceError: its URL or name is taken.
            ConfigError: the edited file would not be valid (it is left as it was).
            StoreError: the file cannot be written.
        """
        path = categories or default_categories(feed.title, site_title, feed.url)
        with self._lock:
            added = append_source(self.config_path, feed.url, path, name)
        if self.after_write is not None:
            self.after_write()
        return AddedSource(added, feed.url, path)
