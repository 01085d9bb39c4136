"""bench/fulltext: full-text extraction — quality, time per page, and its share of a cold poll.

Workload (fixed): the 86 saved article pages of ../shared/article-pages (mozilla/readability's
test pages: news, blogs, Wikipedia, documentation, Chinese pages `qq` and `gmw`), each a
``source.html`` (the page as downloaded) and an ``expected.html`` (its main content). They are
read from there, never copied into this repository.

1. Quality, per extractor (readability-lxml, the one the project uses; trafilatura when it is
   installed; and the project's own pipeline: readability-lxml, then the feed-content
   cleaning): token precision, recall and F1 of the extracted text against the expected
   text (words lower-cased; CJK counted a character at a time), the pages an extractor
   fails (F1 < 0.5), the CJK pages, and the extraction time per page. Mind the reference:
   ``expected.html`` is what Readability.js keeps, so a port of it (readability-lxml) is
   favoured; recall (text lost) and outright failures say more than the mean.
2. Share of a cold poll: a local HTTP server serves a summary-only RSS feed of N entries
   whose links are N of those pages; a fresh store polls it once with ``full_text`` off and
   once with it on (``Poller.poll_sources``: the feed's poll, then the page pass). Printed:
   both times, and the extraction's own time (``extract_page`` on the same pages) as a share
   of the full-text cold poll, beside the page fetches and the rest of ingest.

Usage: bench/fulltext [--pages DIR] [--entries N]   (PYTHON overrides the interpreter)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar, cast

import lxml.html
import yaml

from aggregator.config import load_config
from aggregator.content.clean import CleanOptions, clean_html
from aggregator.content.fulltext import Extraction, Page, extract_page
from aggregator.poll import worker
from aggregator.poll.pipeline import Poller
from aggregator.store import Store

HERE = Path(__file__).resolve().parent
DEFAULT_PAGES = HERE.parent.parent / "shared" / "article-pages"
URL = "http://fakehost/test/page.html"  # the base the expected pages were made with
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"\w+")

Extractor = Callable[[bytes], str]


def text_of(html: str) -> str:
    """The visible text of an HTML fragment or document."""
    if not html.strip():
        return ""
    try:
        return str(cast(lxml.html.HtmlElement, lxml.html.fromstring(html)).text_content())
    except (lxml.etree.ParserError, ValueError):
        return ""


def tokens(text: str) -> Counter[str]:
    """Words, lower-cased; a CJK run is counted a character at a time."""
    found: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            found.update(word)
        else:
            found[word] += 1
    return found


def scores(got: str, want: str) -> tuple[float, float, float]:
    """Token precision, recall and F1 of ``got`` against ``want``."""
    g, w = tokens(got), tokens(want)
    common = sum((g & w).values())
    precision = common / max(1, sum(g.values()))
    recall = common / max(1, sum(w.values()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def readability(body: bytes) -> str:
    return extract_page(Page(URL, body, "text/html")).html or ""


def pipeline(body: bytes) -> str:
    extracted = extract_page(Page(URL, body, "text/html"))
    return clean_html(extracted.html, URL, CleanOptions()).html if extracted.html else ""


def extractors() -> dict[str, Extractor]:
    found: dict[str, Extractor] = {"readability-lxml": readability}
    try:
        import trafilatura
    except ImportError:
        print("trafilatura is not installed: pip install trafilatura to compare it")
    else:

        def traf(body: bytes) -> str:
            result = trafilatura.extract(
                body,
                url=URL,
                output_format="html",
                include_comments=False,
                include_tables=True,
                include_images=True,
                include_links=True,
            )
            return str(result or "")

        found["trafilatura"] = traf
    found["aggregator (readability + clean)"] = pipeline
    return found


def quality(pages: list[Path]) -> None:
    print(f"1. quality on {len(pages)} pages (token P/R/F1 of the text vs expected.html)")
    print(
        f"   {'extractor':34} {'P':>6} {'R':>6} {'F1':>6} {'F1 med':>7} {'fails':>5} "
        f"{'ms/page':>8} {'ms med':>7}"
    )
    for name, extract in extractors().items():
        rows = []
        times = []
        for folder in pages:
            body = (folder / "source.html").read_bytes()
            want = text_of((folder / "expected.html").read_text("utf-8", errors="replace"))
            start = time.perf_counter()
            try:
                got = extract(body)
            except Exception:  # an extractor's crash is its failure on that page
                got = ""
            times.append(time.perf_counter() - start)
            rows.append((folder.name, *scores(text_of(got), want)))
        fails = [r for r in rows if r[3] < 0.5]
        print(
            f"   {name:34} {statistics.mean(r[1] for r in rows):6.3f} "
            f"{statistics.mean(r[2] for r in rows):6.3f} {statistics.mean(r[3] for r in rows):6.3f} "
            f"{statistics.median(r[3] for r in rows):7.3f} {len(fails):5d} "
            f"{1000 * statistics.mean(times):8.1f} {1000 * statistics.median(times):7.1f}"
        )
        for page, p, r, f in rows:
            if page in ("qq", "gmw") or f < 0.5:
                label = "CJK " if page in ("qq", "gmw") else "fail"
                print(f"      {label} {page:38} P={p:.2f} R={r:.2f} F1={f:.2f}")


class _Site(BaseHTTPRequestHandler):
    feed = b""
    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path == "/feed.xml":
            body, kind = self.feed, "application/rss+xml"
        else:
            body, kind = self.pages.get(self.path, b""), "text/html; charset=utf-8"
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def cold_poll(pages: list[Path], entries: int) -> None:
    chosen = [pages[i % len(pages)] for i in range(entries)]
    bodies = {f"/a/{i}": p.joinpath("source.html").read_bytes() for i, p in enumerate(chosen)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    items = "".join(
        f"<item><title>Story {i}</title><guid>g{i}</guid><link>{base}/a/{i}</link>"
        f"<pubDate>Mon, 01 Jan 2024 10:00:00 GMT</pubDate>"
        f"<description>A two-line teaser of story {i}.</description></item>"
        for i in range(entries)
    )
    _Site.feed = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>{base}/</link><description>d</description>{items}</channel></rss>"
    ).encode()
    _Site.pages = bodies
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"\n2. cold poll of a summary-only feed of {entries} entries served locally")
    timings: dict[bool, float] = {}
    spent = [0.0]  # extraction time inside the full-text poll (workers=1: in this process)

    def timed(page: Page, selector: str | None = None) -> Extraction:
        start = time.perf_counter()
        try:
            return extract_page(page, selector)
        finally:
            spent[0] += time.perf_counter() - start

    worker.extract_page = timed  # type: ignore[attr-defined]
    try:
        with tempfile.TemporaryDirectory() as root:
            for full_text in (False, True):
                folder = Path(root) / str(full_text)
                folder.mkdir()
                config = {
                    "settings": {"posts_dir": "posts", "database": "index.sqlite"},
                    "sources": [
                        {
                            "url": f"{base}/feed.xml",
                            "categories": ["b", "s", "f"],
                            "full_text": full_text,
                        }
                    ],
                }
                (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
                loaded = load_config(folder / "config.yaml")
                store = Store(loaded.settings.database, loaded.settings.posts_dir)
                poller = Poller(loaded, store, workers=1)
                start = time.perf_counter()
                [outcome] = poller.poll_sources(loaded.sources)
                timings[full_text] = time.perf_counter() - start
                assert outcome.ok and outcome.new == entries, outcome
                poller.close()
                store.close()
    finally:
        server.shutdown()
        worker.extract_page = extract_page  # type: ignore[attr-defined]
    extraction = spent[0]
    feed_only, with_pages = timings[False], timings[True]
    rest = with_pages - feed_only - extraction
    print(f"   feed only (full_text off):       {1000 * feed_only:8.0f} ms")
    print(f"   feed + pages (full_text on):     {1000 * with_pages:8.0f} ms")
    print(
        f"   of which extraction:             {1000 * extraction:8.0f} ms "
        f"({1000 * extraction / entries:.1f} ms/page, {100 * extraction / with_pages:.0f}% of the cold poll)"
    )
    print(
        f"   page fetches, storing, cleaning and rewriting: {1000 * rest:8.0f} ms "
        f"({100 * rest / with_pages:.0f}%); the feed's own poll: {100 * feed_only / with_pages:.0f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES)
    parser.add_argument("--entries", type=int, default=50)
    args = parser.parse_args()
    pages = sorted(p for p in args.pages.iterdir() if (p / "expected.html").is_file())
    if not pages:
        sys.exit(f"no article pages under {args.pages}")
    quality(pages)
    cold_poll(pages, args.entries)


if __name__ == "__main__":
    main()
