"""Static feeds: every republished feed written as files, for a static site to serve.

Owns one folder (``settings.publish.static_dir``, or the one ``export-feeds`` is given):
each feed of the web app (``feeds/all``, every level of the category tree, every named
output) in RSS, Atom and JSON Feed at the web app's own URL paths, an ``index.html`` and
a ``feeds.opml`` listing them, and a hidden manifest of the files written here.

The documents are made by the web app's own code (``Store.selected``, ``feed_meta``,
``publish.render``) with ``publish.base_url`` as the base of self links, so a file holds
the bytes the web app serves for the same path under the same base URL. Each file is
written atomically (temp file, rename) and only when its bytes change: a site generator
or rsync sees unchanged feeds unchanged (mtime kept). Rendering is most of the cost, so a
feed is not even rendered when a digest of what it is made from (its entries as read,
titles, URL) is the one its file was made from; an export with the entries, config and
base URL of the last one does nothing at all. Files of feeds that are gone are
removed, but only files this module wrote (the manifest says which): a file of the user's
in the folder is never replaced nor removed.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

from aggregator import __version__
from aggregator.config import Config
from aggregator.content.filter import parse_query
from aggregator.content.publish import FORMATS, Format, clean_text, render
from aggregator.content.selection import StaticFeed, feed_meta, static_feeds
from aggregator.errors import StoreError
from aggregator.models import PublishedEntry
from aggregator.store.files import write_atomic
from aggregator.store.index import Store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the changes of a feed no entry ever reached

log = logging.getLogger(__name__)

MANIFEST = ".aggregator-feeds.json"  # hidden: site generators skip it
INDEX = "index.html"
OPML = "feeds.opml"
KINDS: tuple[Format, ...] = ("rss", "atom", "json")
LABELS = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one export did."""

    folder: str
    written: tuple[str, ...] = ()  # paths (relative) whose bytes changed or are new
    unchanged: int = 0  # files left as they were: same bytes
    removed: tuple[str, ...] = ()  # our files of feeds that are gone
    notes: tuple[str, ...] = ()  # feeds left out, user's files not replaced
    skipped: bool = False  # nothing changed since the last export: nothing was done

    @property
    def changed(self) -> bool:
        """True when a file was written or removed."""
        return bool(self.written or self.removed)

    def summary(self) -> str:
        """One line for a person."""
        if self.skipped:
            return f"static feeds in {self.folder}: up to date"
        return (
            f"static feeds in {self.folder}: {len(self.written)} written, "
            f"{self.unchanged} unchanged, {len(self.removed)} removed"
        )


@dataclass(frozen=True, slots=True)
class _Written:
    """What the manifest knows of one file we wrote."""

    written: str  # when its bytes last changed (ISO 8601)
    size: int  # its size then: a file changed or lost since is made again
    key: str = ""  # a digest of all its bytes depend on (entries, titles, URL, version)


@dataclass(slots=True)
class _Manifest:
    """The hidden record of what we wrote: the files, and what each was made from."""

    files: dict[str, _Written] = field(default_factory=dict)
    state: str = ""  # content version, config and base URL of the last export

    @classmethod
    def read(cls, folder: Path) -> _Manifest:
        try:
            data = json.loads((folder / MANIFEST).read_bytes())
            files = {
                str(path): _Written(str(v["written"]), int(v["size"]), str(v.get("key", "")))
                for path, v in data["files"].items()
            }
            return cls(files, str(data.get("state", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()  # none (or damaged): we know of no file of ours

    def data(self) -> bytes:
        files = {
            path: {"written": w.written, "size": w.size, "key": w.key}
            for path, w in sorted(self.files.items())
        }
        document = {"files": files, "state": self.state}
        return json.dumps(document, ensure_ascii=False, indent=0).encode("utf-8")


def export_state(store: Store, config: Config, base_url: str) -> str:
    """What the static files depend on: the stored entries, the config, the base URL."""
    digest = hashlib.sha1(config.model_dump_json().encode()).hexdigest()[:16]
    return f"{store.content_version(fresh=True)}:{digest}:{base_url}"


def export_feeds(
    store: Store,
    config: Config,
    folder: str | Path,
    *,
    base_url: str,
    now: datetime,
    force: bool = True,
) -> ExportReport:
    """Write every feed, the index page and the OPML list into ``folder``.

    Args:
        base_url: the absolute URL the folder is served at, ending in "/".
        now: the time of the export (recorded in the manifest for the files it writes).
        force: render every feed and compare its bytes with the file's (``False``: an
            export whose entries, config and base URL are those of the last one does
            nothing, and a feed whose entries, titles and URL are those its file was
            made from, and whose file has its size still, is not rendered again).

    Raises:
        StoreError: the folder or a file in it cannot be written.
    """
    root = Path(folder)
    manifest = _Manifest.read(root)
    state = export_state(store, config, base_url)
    if not force and manifest.state == state:
        return ExportReport(str(root), skipped=True)
    now = now.astimezone(UTC).replace(microsecond=0)
    feeds, notes = static_feeds(config)
    settings = config.settings.publish
    query = parse_query((), settings.default_limit, settings.max_limit)
    written: list[str] = []
    unchanged = 0
    kept: dict[str, _Written] = {}
    found = list(notes)

    def put(path: str, make: Callable[[], bytes], key: str = "") -> None:
        nonlocal unchanged
        target = root / path
        mine = manifest.files.get(path)
        if mine is None and target.exists():
            found.append(f"{path} is not written: a file that is not ours is there")
            return
        if (
            not force
            and mine is not None
            and key
            and mine.key == key
            and _size(target) == mine.size
        ):
            unchanged += 1  # made from the same as its file: the same bytes
            kept[path] = mine
            return
        data = make()
        old = _read(target) if mine is not None else None
        if mine is not None and old == data:
            unchanged += 1
            kept[path] = _Written(mine.written, len(data), key)
            return
        write_atomic(target, data)
        written.append(path)
        kept[path] = _Written(now.isoformat(), len(data), key)

    for feed in feeds:
        version = store.feed_version(feed.selection)
        entries = store.selected(feed.selection, query)
        made_from = _digest(feed, entries, base_url)
        # An empty feed is dated by its newest change, as the web app dates it: one URL
        # gets the same bytes from both, and from any process.
        changed = (version.changed_at or EPOCH).astimezone(UTC).replace(microsecond=0)
        for kind in KINDS:
            path = f"{feed.path}.{kind}"
            document = partial(_document, feed, kind, entries, base_url, path, changed)
            put(path, document, key=f"{made_from}:{kind}:{changed}")
    put(INDEX, lambda: index_page(config, feeds))
    put(OPML, lambda: opml_list(config, feeds, base_url))
    removed = _remove_gone(root, manifest.files.keys() - kept.keys())
    manifest.files, manifest.state = kept, state
    if _read(root / MANIFEST) != (data := manifest.data()):
        write_atomic(root / MANIFEST, data)
    report = ExportReport(
        str(root), tuple(written), unchanged, tuple(removed), tuple(dict.fromkeys(found))
    )
    for note in report.notes:
        log.warning("static feeds: %s", note)
    return report


def _document(
    feed: StaticFeed,
    kind: Format,
    entries: list[PublishedEntry],
    base_url: str,
    path: str,
    generated: datetime,
) -> bytes:
    """A feed's document at ``base_url`` + ``path``: what the web app serves there."""
    meta = feed_meta(feed.selection, base=base_url, path=path, generated=generated)
    return render(kind, meta, entries)


def _digest(feed: StaticFeed, entries: list[PublishedEntry], base_url: str) -> str:
    """A digest of everything a feed's documents are made from but the time: its
    entries as read (every field), its titles and paths, the base URL, our version
    (a new version may render differently). Hashing is ten times cheaper than rendering."""
    s = feed.selection
    made_from = (__version__, base_url, feed.path, s.key, s.title, s.description, s.home)
    return hashlib.sha1(repr((made_from, entries)).encode()).hexdigest()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _remove_gone(root: Path, paths: set[str]) -> list[str]:
    """Remove our files that no feed wants now, and the folders that leaves empty."""
    removed = []
    for path in sorted(paths):
        target = root / path
        try:
            target.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot remove {target}: {exc.strerror or exc}") from exc
        removed.append(path)
        parent = target.parent
        while parent != root and parent.is_relative_to(root):
            with suppress(OSError):  # not empty (or not ours to judge): kept
                parent.rmdir()
                parent = parent.parent
                continue
            break
    return removed


def index_page(config: Config, feeds: list[StaticFeed]) -> bytes:
    """A plain HTML page listing every feed, with links relative to the folder."""
    title = html.escape(clean_text(config.settings.publish.title) or "aggregator")
    rows = []
    for feed in feeds:
        links = " · ".join(
            f'<a href="{html.escape(quote(f"{feed.path}.{kind}"))}" '
            f'type="{FORMATS[kind].split(";")[0]}">{LABELS[kind]}</a>'
            for kind in KINDS
        )
        rows.append(f"<li>{html.escape(feed.label)}: {links}</li>")
    first = f"{feeds[0].path}.rss" if feeds else ""
    alternate = (
        f'<link rel="alternate" type="application/rss+xml" title="{title}" '
        f'href="{html.escape(quote(first))}">\n'
        if first
        else ""
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}: feeds</title>\n{alternate}</head>\n<body>\n"
        f"<h1>{title}: feeds</h1>\n<ul>\n" + "\n".join(rows) + "\n</ul>\n"
        f'<p>Also as <a href="{OPML}">OPML</a>.</p>\n</body>\n</html>\n'
    )
    return page.encode("utf-8")


def opml_list(config: Config, feeds: list[StaticFeed], base_url: str) -> bytes:
    """OPML 2.0 listing every feed's RSS file by its absolute URL (to import in a reader)."""
    title = clean_text(config.settings.publish.title) or "aggregator"
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = f"{title}: feeds"
    body = ElementTree.SubElement(opml, "body")
    for feed in feeds:
        ElementTree.SubElement(
            body,
            "outline",
            type="rss",
            text=clean_text(feed.label),
            title=clean_text(feed.selection.title),
            xmlUrl=base_url + quote(f"{feed.path}.rss"),
        )
    ElementTree.indent(opml)
    data: bytes = ElementTree.tostring(opml, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


class StaticFeeds:
    """Keeps ``settings.publish.static_dir`` up to date in ``aggregator run``.

    ``changed()`` is cheap and called after every poll, rebuild and reload; the export
    runs on a thread of its own, one at a time, and asks made while it runs are merged
    into one more export. An export whose entries, config and base URL are those of the
    last one does nothing, so polls that changed nothing cost one manifest read.

    Args:
        store: the shared store.
        config: the configuration in force, asked at each export.
        clock: the current UTC time.
    """

    def __init__(
        self, store: Store, config: Callable[[], Config], clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.last: ExportReport | None = None  # the latest export's report
        self.error: str | None = None  # why the latest export failed, if it did
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def changed(self) -> None:
        """Ask for an export (entries or the configuration may have changed)."""
        settings = self.config().settings.publish
        if settings.static_dir is None or settings.base_url is None:
            return
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="static", daemon=True)
                self._thread.start()
        self._wanted.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the export thread after the export in progress, if any."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            self.export()

    def export(self) -> ExportReport | None:
        """Export now (on the caller's thread) unless nothing changed; None on failure."""
        config = self.config()
        settings = config.settings.publish
        if settings.static_dir is None or settings.base_url is None:
            return None
        try:
            report = export_feeds(
                self.store,
                config,
                settings.static_dir,
                base_url=settings.base_url,
                now=self.clock(),
                force=False,
            )
        except StoreError as exc:  # a full disk must not stop polling; the next try may
            self.error = str(exc)
            log.error("static feeds not written: %s", exc)
            return None
        except Exception as exc:  # a bug: logged in full, and polling goes on
            self.error = str(exc) or type(exc).__name__
            log.exception("static feeds: export failed")
            return None
        self.error = None
        self.last = report
        if report.changed:
            log.info("%s", report.summary())
        return report
