"""Full text: fetch the web pages of a source's new entries and take their bodies from them.

A page pass runs after the feed's own poll is stored and recorded, never inside it: the
feed's entries are articles (with the feed's body) first, then each new entry's page is
fetched once, kept raw in the ``pages`` table, its main content extracted (in the parse
pool: it is CPU work) and the article rewritten with it. A slow or failing site thus
never delays or fails the poll of its feed. Pages go through the poll's own ``Fetcher``
(timeouts, size cap, per-host slots, private-address block, User-Agent) with the source's
fetch options (its credentials only on the feed's own origin), one at a time
per source, at most ``PAGES_PER_PASS`` per pass (the rest wait for the next poll).

Which entries a pass takes is the ``pages`` table's answer (``store.pages.page_work``):
those with no stored page (to fetch), and those whose entry changed since its page was
applied (a poll wrote the feed's new version: the stored page is applied again, not
fetched). A failed fetch is stored too, with its reason: a page is asked for once per
entry; ``aggregator refetch`` forgets the stored pages and asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

from aggregator.content.clean import is_http
from aggregator.content.fulltext import Page
from aggregator.errors import FetchError, StoreError
from aggregator.models import Changes
from aggregator.poll.fetch import Fetcher
from aggregator.poll.ingest import Ingest
from aggregator.poll.resolve import ResolvedSource
from aggregator.poll.worker import InlineExecutor, prepare_stored
from aggregator.redact import redact, without_credentials
from aggregator.store import Store
from aggregator.store.pages import (
    PageResult,
    PageWork,
    drop_orphan_pages,
    load_pages,
    page_work,
    record_results,
    save_page,
)

log = logging.getLogger(__name__)

PAGES_PER_PASS = 50  # pages fetched for one source per pass; the rest wait for the next


@dataclass(frozen=True, slots=True)
class PagesDone:
    """What one page pass did for one source."""

    source: str
    fetched: int = 0  # pages fetched (successfully or not)
    from_page: int = 0  # articles whose body is now the page's main content
    from_feed: int = 0  # articles that keep the feed's body (with a recorded reason)
    error: str | None = None  # the index could not be written
    changes: Changes = field(default_factory=Changes)  # the article files it rewrote (hooks)


def update_pages(
    store: Store,
    ingest: Ingest,
    fetcher: Fetcher,
    source: ResolvedSource,
    now: datetime,
    pool: Executor | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    limit: int = PAGES_PER_PASS,
) -> PagesDone:
    """Fetch the pages a source's entries still need and rewrite their articles.

    Args:
        should_stop: asked between two fetches; True ends the pass early (the service
            is stopping). What was fetched so far is still applied.
        limit: entries taken at most.
    """
    if not source.full_text:
        return PagesDone(source.name)
    with store.transaction() as conn:
        work = page_work(conn, source.name, limit)
    if not work:
        return PagesDone(source.name)
    fetched: dict[str, Page | str] = {}
    statuses: dict[str, int | None] = {}
    for item in work:
        if not item.fetch:
            continue
        if should_stop():
            break
        page, status = _fetch(fetcher, item, source)
        fetched[item.key] = page
        statuses[item.key] = status
    work = [w for w in work if not w.fetch or w.key in fetched]
    try:
        with store.transaction() as conn:
            for key, page in fetched.items():
                save_page(
                    conn,
                    source.name,
                    key,
                    now,
                    page=page if isinstance(page, Page) else None,
                    status=statuses[key],
                    error=page if isinstance(page, str) else None,
                )
            stored = load_pages(conn, source.name, [w.key for w in work if not w.fetch])
    except StoreError as exc:
        return PagesDone(source.name, error=str(exc))
    pages: list[Page | str] = []
    for item in work:
        if item.key in fetched:
            pages.append(fetched[item.key])
        else:
            old = stored.get(item.key)
            pages.append((old.page or old.error or "fetch failed") if old else "no page stored")
    job = (pool or InlineExecutor()).submit(
        prepare_stored,
        source.view,
        [w.raw_json for w in work],
        now,
        pages,
        source.full_text_selector,
    )
    prepared = job.result()
    hashes = {w.key: w.raw_hash for w in work}
    keys = [work[i].key for i in prepared.indices]
    results = [
        PageResult(key, a.body_from, a.body_note, hashes[key])
        for key, a in zip(keys, prepared.articles, strict=True)
    ]
    try:
        with store.transaction() as conn:
            applied = ingest.write_files(
                conn, source, prepared.articles, now, keys=keys, force=True
            )
            ingest.write_rows(conn, applied)
            record_results(conn, source.name, results)
            drop_orphan_pages(conn, source.name)
    except StoreError as exc:
        return PagesDone(source.name, fetched=len(fetched), error=str(exc))
    used = sum(r.body_from == "page" for r in results)
    done = PagesDone(
        source.name, len(fetched), used, len(results) - used, None, applied.counts.changes
    )
    log.info(
        "pages source=%s fetched=%d from_page=%d from_feed=%d",
        done.source,
        done.fetched,
        done.from_page,
        done.from_feed,
    )
    return done


def _fetch(
    fetcher: Fetcher, item: PageWork, source: ResolvedSource
) -> tuple[Page | str, int | None]:
    """An entry's page, or why it could not be had (as stored: credentials redacted).

    With the source's fetch options: its proxy and User-Agent always, its credentials
    only when the page is on the feed's own origin (a site behind a login serves its
    pages behind it too; an entry linking elsewhere must not carry them there).
    """
    if not is_http(item.link):
        return "the entry's link is not a web address", None
    try:
        answer = fetcher.fetch(item.link, options=source.fetch, origin=source.config.url)
    except FetchError as exc:
        return redact(f"fetch failed: {exc}"), exc.status
    url = without_credentials(answer.url)
    return Page(url, answer.body, answer.headers.get("content-type", "")), answer.status
