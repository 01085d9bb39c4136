"""The "what changed" decision for one source's articles: pure, no I/O.

Given a source's converted articles by their assigned keys (a ``Batch``), what the store
knows of them (their index rows, the paths taken, the orphan files and the files on disk
that matter, gathered beforehand as values: ``Known``), the source's resolved settings
and ``now``, ``decide`` returns a ``Plan``: the files to write and delete, the rows to
write, the entries seen again, the counts and warnings. ``ingest`` gathers the facts and
carries the plan out; nothing here reads the clock, the disk or the database, so every
branch that can lose or rewrite an article is tested from tables (tests/test_decide.py).

The rules the plan follows:

- An entry pruned before stays pruned; a new entry older than ``keep_days`` is not kept.
- An entry whose upstream bytes, render settings and file are as recorded is only seen
  again (its ``last_seen`` moves).
- A rule's drop deletes the entry's file and keeps its row, as the audit.
- A new file is named after the title; a namesake (in the index, claimed in this batch,
  or someone's own file), even one that differs only in case, accents or punctuation
  (``fold_path``: one page URL for Hugo, Hexo or Jekyll, one file on macOS or Windows),
  gets the entry's id as a suffix, as does a name that folds to nothing; a file a
  killed run wrote before its index commit is adopted by the ``entry_id`` in its front
  matter. An entry's file keeps its name for good, whatever its title becomes.
- A rebuild never writes back an entry a poll has changed (or pruned) since it read it,
  and never overwrites a file that is not the entry's own article.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from aggregator.content.convert import (
    article_name,
    entry_uid,
    fold_path,
    render_article,
    text_hash,
)
from aggregator.content.filter import verdict
from aggregator.models import Article, Counts, WriteFailure
from aggregator.poll.resolve import ResolvedSource
from aggregator.store.records import EntryRow, StoredEntry


class Change(StrEnum):
    """What a row written for an entry records."""

    NEW = "new"
    UPDATED = "updated"  # upstream changed, or its file had to be written again
    UNCHANGED = "unchanged"  # rewritten row, same entry and file (e.g. a rebuild)
    DROPPED = "dropped"  # by a rule: the row is the audit, there is no file


class Look(StrEnum):
    """How much of a file ``decide`` needs to know."""

    EXISTS = "exists"  # whether it is there
    OWNER = "owner"  # and which entry it is the article of (its front matter's entry_id)
    CONTENT = "content"  # and its bytes (a rebuild compares them)


@dataclass(frozen=True, slots=True)
class Batch:
    """One source's converted articles by their assigned keys, with the rules' verdicts."""

    #: key → article; an item a feed repeats to the letter counts once (the first).
    articles: Mapping[str, Article]
    #: key → the rule that drops the entry; absent: the rules keep it.
    dropped_by: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OnDisk:
    """A file that is at a path, as far as ``decide`` needs to know it."""

    #: The entry_id in its front matter (None: not one of our articles, or not read).
    entry_id: str | None = None
    #: Its bytes, read for a rebuild only (None: not read, or unreadable).
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows of a batch, gathered before deciding."""

    #: key → the index row, for the batch's keys the source has.
    entries: Mapping[str, StoredEntry] = field(default_factory=dict)
    #: The folds (``fold_path``) of the wanted new paths that are not free: the path of
    #: an index row, or a file or folder in the source's folder, has them.
    taken: frozenset[str] = frozenset()
    #: entry_id → path of the article files in the source's folder that no row points at.
    orphans: Mapping[str, str] = field(default_factory=dict)
    #: path → the file there, for the paths ``files_to_examine`` lists; absent: no file.
    files: Mapping[str, OnDisk] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """An index row to write once its file (if it has one) is on disk."""

    change: Change
    row: EntryRow


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a batch: files first, then the rows whose file is on disk."""

    #: The rows, in batch order.
    rows: tuple[PlannedRow, ...] = ()
    #: path → the article text to write there.
    writes: Mapping[str, str] = field(default_factory=dict)
    #: Files to delete (of entries a rule now drops).
    deletes: tuple[str, ...] = ()
    #: Keys of entries unchanged, their file in place: only their last_seen moves.
    seen_again: tuple[str, ...] = ()
    #: Entries left as they are without a row (seen again, or a rebuild's stale read).
    unchanged: int = 0
    #: Entries not kept: pruned before, too old when first seen, or dropped by a rule.
    dropped: int = 0
    #: Problems with single entries (a file that is not the entry's own article).
    warnings: tuple[str, ...] = ()

    def settle(self, failures: Mapping[str, WriteFailure]) -> tuple[tuple[EntryRow, ...], Counts]:
        """The rows to write and the counts, once the files were written.

        Args:
            failures: path → why its file could not be written. Such an entry gets no
                row (the index never points at a file that is not there) and counts
                as failed.
        """
        rows: list[EntryRow] = []
        changes = dict.fromkeys(Change, 0)
        lost: list[WriteFailure] = []
        for planned in self.rows:
            path = planned.row.path
            if path is not None and path in failures:
                lost.append(failures[path])
                continue
            changes[planned.change] += 1
            rows.append(planned.row)
        counts = Counts(
            new=changes[Change.NEW],
            updated=changes[Change.UPDATED],
            unchanged=self.unchanged + changes[Change.UNCHANGED],
            dropped=self.dropped,  # the rules' drops are counted when decided
            failed=len(lost),
            warnings=self.warnings,
            write_failures=tuple(lost),
        )
        return tuple(rows), counts


def make_batch(source: ResolvedSource, keys: Sequence[str], articles: Sequence[Article]) -> Batch:
    """Pair articles with their keys (the first of a repeated key wins) and apply the rules."""
    by_key: dict[str, Article] = {}
    for key, article in zip(keys, articles, strict=True):
        by_key.setdefault(key, article)
    dropped: dict[str, str] = {}
    if source.rules:
        for key, article in by_key.items():
            reason = verdict(source.rules, article)
            if reason is not None:
                dropped[key] = reason
    return Batch(by_key, dropped)


def wanted_paths(
    source: ResolvedSource, batch: Batch, entries: Mapping[str, StoredEntry]
) -> dict[str, str]:
    """key → the file a kept entry that has none yet would get by its title alone."""
    return {
        key: f"{source.folder}/{article_name(article.title)}"
        for key, article in batch.articles.items()
        if key not in batch.dropped_by
        and (key not in entries or not (entries[key].path or entries[key].pruned))
    }


def files_to_examine(
    source: ResolvedSource,
    batch: Batch,
    entries: Mapping[str, StoredEntry],
    wanted: Mapping[str, str],
    orphans: Mapping[str, str],
    *,
    rebuild: bool,
) -> dict[str, Look]:
    """path → what ``decide`` needs to know of the file there.

    A poll trusts the index's record of a file it wrote, so it only asks whether that
    file is still there; of a name it wants for a new file (``wanted_paths``), it asks
    whose file is there. A rebuild compares the bytes of every file it may write.
    """
    looks = {e.path: Look.EXISTS for e in entries.values() if e.path}
    looks.update(dict.fromkeys(wanted.values(), Look.OWNER))
    if rebuild:
        looks = dict.fromkeys(looks, Look.CONTENT)
        for key in wanted:
            uid = entry_uid(source.name, key)
            looks[_suffixed(source, batch.articles[key], uid)] = Look.CONTENT
            if uid in orphans:
                looks[orphans[uid]] = Look.CONTENT
    return looks


def decide(
    source: ResolvedSource,
    batch: Batch,
    known: Known,
    now: datetime,
    *,
    rebuild: bool = False,
    force: bool = False,
) -> Plan:
    """Decide what changed in a batch and what to write.

    Args:
        source: the source's resolved settings.
        batch: its converted articles by key.
        known: what the store knows of them.
        now: the time of the poll (first and last seen, retention).
        rebuild: the articles are the stored entries rendered again: their stored state
            must still be what the rebuild read, and files are compared byte for byte.
        force: render every entry again, even when nothing seems to have changed.
    """
    name = source.name
    entries = known.entries
    cutoff = now - timedelta(days=source.keep_days) if source.keep_days else None
    new_paths = _new_paths(source, batch, known)
    rows: list[PlannedRow] = []
    writes: dict[str, str] = {}
    deletes: list[str] = []
    seen_again: list[str] = []
    warnings: list[str] = []
    unchanged = dropped = 0
    for key, article in batch.articles.items():
        state = entries.get(key)
        if state is not None and state.pruned:
            dropped += 1
            continue
        if rebuild and (state is None or state.raw_hash != article.raw_hash):
            # A poll stored a newer version (or pruned it) since the rebuild read it:
            # writing the older one back would revert it.
            unchanged += 1
            continue
        date = article.published or article.updated or (state.first_seen if state else now)
        if state is None and cutoff is not None and date < cutoff:
            dropped += 1
            continue
        if (
            not force
            and state is not None
            and state.path
            and state.raw_hash == article.raw_hash
            and state.render_key == source.render_key
            and state.path in known.files
        ):
            unchanged += 1
            seen_again.append(key)
            continue
        uid = state.uid if state else entry_uid(name, key)
        reason = batch.dropped_by.get(key)
        if reason is not None:
            # Dropped by a rule: no file (an earlier one goes), the row is the audit.
            dropped += 1
            if state is not None and state.path:
                deletes.append(state.path)
            row = _row(source, key, uid, None, article, date, state, now, None, reason)
            rows.append(PlannedRow(Change.DROPPED, row))
            continue
        path = state.path if state and state.path else new_paths[key]
        text = _rendered(source, article, uid, date)
        digest = text_hash(text)
        on_disk = known.files.get(path)
        write, warning = _needs_write(on_disk, path, text, digest, uid, state, rebuild)
        if write:
            writes[path] = text
        if warning is not None:
            warnings.append(warning)
        if state is None:
            change = Change.NEW
        elif state.raw_hash != article.raw_hash or path in writes:
            change = Change.UPDATED
        else:
            change = Change.UNCHANGED
        row = _row(source, key, uid, path, article, date, state, now, digest, None)
        rows.append(PlannedRow(change, row))
    return Plan(
        rows=tuple(rows),
        writes=writes,
        deletes=tuple(deletes),
        seen_again=tuple(seen_again),
        unchanged=unchanged,
        dropped=dropped,
        warnings=tuple(warnings),
    )


def _rendered(source: ResolvedSource, article: Article, uid: str, date: datetime) -> str:
    """The article's file text: the one its worker rendered when made for this id, date
    and settings (a new entry's, usually), else rendered here."""
    pre = article.prerendered
    if pre is not None and (pre.uid, pre.date, pre.render_key) == (uid, date, source.render_key):
        return pre.text
    return render_article(article, uid, date, source.options)


def _needs_write(
    on_disk: OnDisk | None,
    path: str,
    text: str,
    digest: str,
    uid: str,
    state: StoredEntry | None,
    rebuild: bool,
) -> tuple[bool, str | None]:
    """Whether an article's file must be (re)written with ``text``, and a warning.

    A poll trusts the index's record of the file. A rebuild looks at the file itself:
    a killed update can leave a file newer than its index row, which the record calls
    unchanged. A file at the path that is not this entry's article (no or another
    ``entry_id``: someone's own file) is never overwritten.
    """
    if not rebuild:
        same_file = state is not None and state.file_hash == digest
        return not (same_file and on_disk is not None), None
    content = on_disk.content if on_disk is not None else None
    if content == text.encode("utf-8"):
        return False, None
    if content is None or (on_disk is not None and on_disk.entry_id == uid):
        return True, None
    return False, f"{path} is not this entry's article (entry_id {uid}): kept"


def _new_paths(source: ResolvedSource, batch: Batch, known: Known) -> dict[str, str]:
    """Choose a file path for every kept entry that has none yet, unique and stable."""
    chosen: dict[str, str] = {}
    claimed: set[str] = set()  # the folds of the names chosen so far
    for key, path in wanted_paths(source, batch, known.entries).items():
        uid = entry_uid(source.name, key)
        if uid in known.orphans:  # written before a crash, under the title it had then
            chosen[key] = known.orphans[uid]
            claimed.add(fold_path(known.orphans[uid]))
            continue
        fold = fold_path(path)
        on_disk = known.files.get(path)
        someone_elses = on_disk is not None and on_disk.entry_id != uid
        # A name that folds to nothing ("!!!") is its folder's own URL for Hugo, whose
        # list page it would replace: it is never free.
        nothing = fold.endswith("/")
        if fold in known.taken or fold in claimed or someone_elses or nothing:
            path = _suffixed(source, batch.articles[key], uid)
            fold = fold_path(path)
        claimed.add(fold)
        chosen[key] = path
    return chosen


def _suffixed(source: ResolvedSource, article: Article, uid: str) -> str:
    """The name an entry gets when the one made of its title alone is not free."""
    return f"{source.folder}/{article_name(article.title, uid)}"


def _row(
    source: ResolvedSource,
    key: str,
    uid: str,
    path: str | None,
    article: Article,
    date: datetime,
    state: StoredEntry | None,
    now: datetime,
    digest: str | None,
    dropped_by: str | None,
) -> EntryRow:
    return EntryRow(
        source=source.name,
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
        render_key=source.render_key,
        dropped_by=dropped_by,
        dropped_at=now if dropped_by is not None else None,
        authors=article.authors,
        enclosures=article.enclosures,
    )
