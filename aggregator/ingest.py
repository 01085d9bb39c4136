"""Deciding what changed in one source's articles, and writing it: files, then rows.

Pure decisions (identity, rules, retention, names) and the writes they lead to, for a
batch of converted articles of one source, inside one store transaction. Used by every
poll and by rebuilds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aggregator import __version__
from aggregator.clean import Rules
from aggregator.config import Config, SourceConfig
from aggregator.convert import (
    RenderOptions,
    SourceView,
    article_dir,
    article_name,
    assign_keys,
    entry_uid,
    render_article,
)
from aggregator.errors import LocalFaultError
from aggregator.filter import Rule, verdict
from aggregator.models import Article, SourceOutcome
from aggregator.records import EntryRow, StoredEntry
from aggregator.store import Store, text_hash

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass
class Tally:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    dropped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    fault: str | None = None  # our storage failed a write (full disk...): not the source's fault

    def outcome(self, source: str, error: str | None) -> SourceOutcome:
        """The outcome; a failed article write, or keeping nothing at all, fails the source.

        A fault of our own storage fails the poll too, marked ``local_fault`` so that the
        source is not blamed for it.
        """
        writes = [p.removeprefix("write: ") for p in self.problems if p.startswith("write: ")]
        local = error is None and self.fault is not None
        if local:
            error = self.fault
        elif error is None and writes:
            error = writes[0]
        if error is None and self.failed and not (self.new or self.updated or self.unchanged):
            error = f"no entry could be kept ({self.failed} failed)"
        return SourceOutcome(
            source=source,
            new=self.new,
            updated=self.updated,
            unchanged=self.unchanged,
            failed=self.failed,
            dropped=self.dropped,
            error=error,
            warnings=tuple(self.problems),
            local_fault=local,
        )


class Ingest:
    """Applies converted articles of a source to the posts folder and the index.

    Args:
        config: the validated configuration.
        store: the index and the article files.
    """

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._cache: dict[str, tuple[SourceConfig, SourceView, str]] = {}
        settings = config.settings
        self.options = RenderOptions(
            date_style=settings.front_matter.date_style,
            timezone=settings.front_matter.timezone,
            escape_braces=settings.front_matter.escape_braces,
            comments=settings.front_matter.comments,
        )

    # -- per-source facts ----------------------------------------------------------------

    def view(self, source: SourceConfig) -> SourceView:
        """What conversion needs to know about a source."""
        return self._facts(source)[0]

    def render_key(self, source: SourceConfig) -> str:
        """A fingerprint of everything, besides the entry, that shapes its article file."""
        return self._facts(source)[1]

    def _facts(self, source: SourceConfig) -> tuple[SourceView, str]:
        # The config never changes under an Ingest (a reload makes a new one), so a
        # source's view and render key are made once.
        cached = self._cache.get(source.key)
        if cached is None or cached[0] is not source:
            view = self._make_view(source)
            cached = (source, view, self._make_render_key(source, view))
            self._cache[source.key] = cached
        return cached[1], cached[2]

    def _make_view(self, source: SourceConfig) -> SourceView:
        rules = Rules(
            (*self.config.settings.remove, *source.remove), self.config.settings.iframe_hosts
        )
        return SourceView(
            name=source.key,
            categories=source.categories,
            author=source.site,
            rules=rules,
            max_entries=self.config.settings.fetch.max_entries,
        )

    def rules(self, source: SourceConfig) -> tuple[Rule, ...]:
        """The ingest rules of a source: the global ones, then its own."""
        return tuple(r.rule() for r in (*self.config.settings.rules, *source.rules))

    def _make_render_key(self, source: SourceConfig, view: SourceView) -> str:
        facts = [
            __version__,
            self.options.date_style,
            self.options.timezone,
            self.options.escape_braces,
            self.options.comments,
            view.categories,
            view.author,
            view.rules.remove,
            sorted(view.rules.iframe_hosts),
            [r.describe() for r in self.rules(source)],
        ]
        return hashlib.sha1(json.dumps(facts, ensure_ascii=False).encode()).hexdigest()[:16]

    def retention(self, source: SourceConfig) -> tuple[int | None, int | None]:
        settings = self.config.settings
        return (source.keep_days or settings.keep_days, source.keep_max or settings.keep_max)

    def apply(
        self,
        conn: Connection,
        source: SourceConfig,
        articles: Iterable[Article],
        now: datetime,
        tally: Tally,
        keys: list[str] | None = None,
        force: bool = False,
    ) -> None:
        """Decide what changed and write it: files first, then the index rows.

        ``keys`` (for a rebuild) are the stored keys; otherwise they are assigned here.
        ``force`` renders every entry again even when nothing seems to have changed.
        """
        articles = list(articles)
        name = source.key
        view = self.view(source)
        render_key = self.render_key(source)
        rebuilding = keys is not None
        if keys is None:
            pairs = [(a.key, a.alt_key) for a in articles]
            recorded = self.store.alt_keys(conn, name, [k for pair in pairs for k in pair])
            keys = assign_keys(pairs, recorded)
        batch: dict[str, Article] = {}
        for key, article in zip(keys, articles, strict=True):
            batch.setdefault(key, article)  # an item repeated to the letter counts once
        states = self.store.stored_entries(conn, name, batch)
        keep_days, _ = self.retention(source)
        cutoff = now - timedelta(days=keep_days) if keep_days else None
        rules = self.rules(source)
        reasons = {key: verdict(rules, article) for key, article in batch.items()} if rules else {}
        new_paths = self._new_paths(
            conn, view, {k: a for k, a in batch.items() if reasons.get(k) is None}, states
        )
        pending: list[tuple[str, EntryRow]] = []
        writes: dict[str, str] = {}
        deletes: list[str] = []
        seen_again: list[str] = []
        for key, article in batch.items():
            state = states.get(key)
            if state is not None and state.pruned:
                tally.dropped += 1
                continue
            if rebuilding and (state is None or state.raw_hash != article.raw_hash):
                # A poll stored a newer version (or pruned it) since the rebuild read it:
                # writing the older one back would revert it.
                tally.unchanged += 1
                continue
            date = article.published or article.updated or (state.first_seen if state else now)
            if state is None and cutoff is not None and date < cutoff:
                tally.dropped += 1
                continue
            if (
                not force
                and state is not None
                and state.path
                and state.raw_hash == article.raw_hash
                and state.render_key == render_key
                and self.store.files.file_exists(state.path)
            ):
                tally.unchanged += 1
                seen_again.append(key)
                continue
            uid = state.uid if state else entry_uid(name, key)
            reason = reasons.get(key)
            if reason is not None:
                # Dropped by a rule: no file (an earlier one goes), the row is the audit.
                tally.dropped += 1
                if state is not None and state.path:
                    deletes.append(state.path)
                pending.append(
                    (
                        "dropped",
                        self._row(
                            name,
                            key,
                            uid,
                            None,
                            article,
                            date,
                            state,
                            now,
                            None,
                            render_key,
                            reason,
                        ),
                    )
                )
                continue
            path = state.path if state and state.path else new_paths[key]
            text = render_article(article, uid, date, self.options)
            digest = text_hash(text)
            if self._needs_write(path, text, digest, uid, state, rebuilding, tally):
                writes[path] = text
            if state is None:
                kind = "new"
            elif state.raw_hash != article.raw_hash or path in writes:
                kind = "updated"
            else:
                kind = "unchanged"
            pending.append(
                (
                    kind,
                    self._row(
                        name, key, uid, path, article, date, state, now, digest, render_key, None
                    ),
                )
            )
        # Files first (concurrently: creating a file is mostly kernel time), then the rows
        # of the entries whose file is safely on disk.
        for path in deletes:
            self.store.files.delete_file(path)
        failures = self.store.files.write_files(writes)
        rows: list[EntryRow] = []
        for kind, row in pending:
            if row.path is not None and row.path in failures:
                failure = failures[row.path]
                tally.failed += 1
                tally.problems.append(f"write: {failure}")
                if isinstance(failure, LocalFaultError) and tally.fault is None:
                    tally.fault = str(failure)
                continue
            if kind != "dropped":
                setattr(tally, kind, getattr(tally, kind) + 1)
            rows.append(row)
        self.store.upsert_entries(conn, rows)
        self.store.touch_entries(conn, name, seen_again, now)

    def _needs_write(
        self,
        path: str,
        text: str,
        digest: str,
        uid: str,
        state: StoredEntry | None,
        rebuilding: bool,
        tally: Tally,
    ) -> bool:
        """Whether an article's file must be (re)written with ``text``.

        A poll trusts the index's record of the file. A rebuild looks at the file itself:
        a killed update can leave a file newer than its index row, which the record
        calls unchanged. A file at the path that is not this entry's article (no or
        another ``entry_id``: someone's own file) is never overwritten.
        """
        files = self.store.files
        if not rebuilding:
            same_file = state is not None and state.file_hash == digest
            return not (same_file and files.file_exists(path))
        on_disk = files.read_file(path)
        if on_disk == text.encode("utf-8"):
            return False
        if on_disk is None or files.file_belongs_to(path, uid):
            return True
        tally.problems.append(f"{path} is not this entry's article (entry_id {uid}): kept")
        return False

    def _row(
        self,
        name: str,
        key: str,
        uid: str,
        path: str | None,
        article: Article,
        date: datetime,
        state: StoredEntry | None,
        now: datetime,
        digest: str | None,
        render_key: str,
        dropped_by: str | None,
    ) -> EntryRow:
        return EntryRow(
            source=name,
            key=key,
            alt_key=article.alt_key,
            uid=uid,
            path=path,
            title=article.title,
            link=article.link,
            author=article.author,
            categories=article.categories,
            tags=article.tags,
            headimg=article.headimg,
            summary=article.summary,
            body_html=article.body_html,
            published=article.published,
            updated=article.updated,
            date=date,
            first_seen=state.first_seen if state else now,
            last_seen=now,
            raw_json=article.raw_json,
            raw_hash=article.raw_hash,
            file_hash=digest,
            render_key=render_key,
            dropped_by=dropped_by,
            dropped_at=now if dropped_by is not None else None,
        )

    def _new_paths(
        self,
        conn: Connection,
        view: SourceView,
        batch: dict[str, Article],
        states: dict[str, StoredEntry],
    ) -> dict[str, str]:
        """Choose a file path for every entry that has none yet, unique and stable."""
        folder = "/".join(article_dir(view.categories))
        wanted = {
            key: f"{folder}/{article_name(a.title)}"
            for key, a in batch.items()
            if key not in states or not (states[key].path or states[key].pruned)
        }
        if not wanted:
            return {}
        taken = self.store.paths_taken(conn, wanted.values())
        orphans = self.store.unindexed_files(conn, folder)
        chosen: dict[str, str] = {}
        claimed: set[str] = set()
        for key, path in wanted.items():
            uid = entry_uid(view.name, key)
            if uid in orphans:  # written before a crash, under the title it had then
                chosen[key] = orphans[uid]
                claimed.add(orphans[uid])
                continue
            files = self.store.files
            on_disk = files.file_exists(path) and not files.file_belongs_to(path, uid)
            if path in taken or path in claimed or on_disk:
                path = f"{folder}/{article_name(batch[key].title, uid)}"
            claimed.add(path)
            chosen[key] = path
        return chosen
