"""Per-source overhead (issue 13): what a poll no longer repeats, and what it still keeps.

A folder is listed once and kept while its mtime holds (our own writes keep the listing
current); a rollback forgets every listing, so a killed or failed poll's files are still
adopted by entry_id; an unchanged re-poll writes no entry row and no file; single polls
(``run``'s jobs) that end together are recorded in one transaction, and every poll is
recorded; a batch that fails is written again poll by poll, so one failing source costs
the others nothing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import FeedFile, Harness, HarnessFactory, MakeConfig, item, rss

from aggregator.poll.batch import GroupRecorder, Polled
from aggregator.store.records import PollRecord


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The folders of the test's the store lists (os.scandir, still called for real; not
    the package's own, which Alembic lists to find the schema's revisions)."""
    seen: list[str] = []
    real = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:
        if Path(path).is_relative_to(tmp_path):
            seen.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return seen


def test_a_folder_is_listed_once_for_many_polls_and_again_after_a_foreign_change(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile, listings: list[str]
) -> None:
    paths = [feed_file(f"f{n}.xml", rss(item(f"a{n}", f"Post {n}"))) for n in range(5)]
    h = harness(make_config([{"url": str(p), "categories": ["A"], "name": p.stem} for p in paths]))
    outcomes = h.poll()
    assert len(listings) == 1  # five polls brought a new entry each: one listing
    assert [o.new for o in outcomes] == [1] * 5
    assert len(h.files()) == 5
    # Someone else's file: the folder's mtime moves, so it is listed again, and the new
    # entry does not take a name that folds to theirs.
    folder = h.files()[0].parent
    (folder / "Next-post.md").write_text("---\ntitle: mine\n---\n", encoding="utf-8")
    feed_file("f0.xml", rss(item("a0", "Post 0") + item("b", "NEXT POST")))
    listings.clear()
    h.poll()
    assert len(listings) == 1
    assert (folder / "Next-post.md").read_text(encoding="utf-8") == "---\ntitle: mine\n---\n"
    assert len(h.files()) == 7


def test_a_rolled_back_poll_forgets_the_listing_and_its_file_is_adopted_later(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    one = feed_file("one.xml", rss(item("a", "First")))
    two = feed_file("two.xml", rss(item("b", "First title")))
    h = harness(
        make_config(
            [
                {"url": str(one), "categories": ["A"], "name": "one"},
                {"url": str(two), "categories": ["A"], "name": "two"},
            ]
        )
    )
    h.poller.poll_source(h.config.sources[0])  # the folder is listed (and kept)
    database = h.config.settings.database
    with sqlite3.connect(database) as conn:  # a real failure after the files are written
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON entries WHEN NEW.source = 'two' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    failed = h.poller.poll_source(h.config.sources[1])
    assert not failed.ok and "boom" in (failed.error or "")
    orphan = [f for f in h.files() if f.name.lower().startswith("first-title")]
    assert len(orphan) == 1  # written, no row: what a kill before the commit leaves
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER boom")
    # The title changes: only the folder's listing (entry_id) can find the file now.
    feed_file("two.xml", rss(item("b", "Second title")))
    outcome = h.poller.poll_source(h.config.sources[1], manual=True)
    assert outcome.new == 1
    assert len(h.files()) == 2
    assert orphan[0].exists()
    assert "Second title" in orphan[0].read_text(encoding="utf-8")


def test_an_unchanged_repoll_writes_no_entry_row(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post") + item("b", "Other")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    with sqlite3.connect(h.config.settings.database) as conn:
        conn.execute("CREATE TABLE row_writes (n INTEGER)")
        for event in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(
                f"CREATE TRIGGER count_{event.lower()} AFTER {event} ON entries "
                "BEGIN INSERT INTO row_writes VALUES (1); END"
            )
    [outcome] = h.poll()
    assert outcome.not_modified
    with sqlite3.connect(h.config.settings.database) as conn:
        assert conn.execute("SELECT count(*) FROM row_writes").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM polls").fetchone() == (2,)


def test_single_polls_that_end_together_are_recorded_in_one_transaction() -> None:
    written: list[list[str]] = []
    leases: list[str | None] = []
    first_started = threading.Event()
    release = threading.Event()

    def write(batch: list[Polled], batch_leases: list[str | None]) -> list[PollRecord]:
        written.append([str(r) for r in batch])
        leases.extend(batch_leases)
        first_started.set()
        release.wait(10)
        return batch  # type: ignore[return-value]  # strings standing for records

    recorder = GroupRecorder(write)
    threads = [
        threading.Thread(target=recorder.record, args=(f"poll {n}", f"lease {n}")) for n in range(5)
    ]
    threads[0].start()
    assert first_started.wait(10)  # the first writes its own at once, alone
    for thread in threads[1:]:
        thread.start()
    while recorder._issued < 5:  # the others wait behind it
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert written[0] == ["poll 0"]
    assert sorted(written[1]) == ["poll 1", "poll 2", "poll 3", "poll 4"]
    assert len(written) == 2
    assert sorted(leases, key=str) == [f"lease {n}" for n in range(5)]  # each claim ends


def test_concurrent_single_polls_are_each_recorded(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    paths = [feed_file(f"f{n}.xml", rss(item(f"a{n}", f"Post {n}"))) for n in range(8)]
    h = harness(make_config([{"url": str(p), "categories": ["A"], "name": p.stem} for p in paths]))
    threads = [
        threading.Thread(target=h.poller.poll_source, args=(source,)) for source in h.config.sources
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(h.files()) == 8
    with sqlite3.connect(h.config.settings.database) as conn:
        assert conn.execute("SELECT count(*) FROM polls").fetchone() == (8,)
        assert conn.execute("SELECT count(DISTINCT source) FROM polls").fetchone() == (8,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'polls_total'").fetchone() == ("8",)


def test_a_failing_source_in_a_batch_still_records_every_other_source(
    make_config: MakeConfig,
    harness: HarnessFactory,
    feed_file: FeedFile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    names = ["a", "b", "bad", "junk", "c"]
    paths = {n: feed_file(f"{n}.xml", rss(item(f"{n}1", f"Post of {n}"))) for n in names}
    feed_file("junk.xml", b"\x00\xff<rss><channel><item><title>")  # not a feed at all
    h = harness(
        make_config([{"url": str(paths[n]), "categories": ["A"], "name": n} for n in names])
    )
    database = h.config.settings.database
    with sqlite3.connect(database) as conn:  # a real failure of one source's rows
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON entries WHEN NEW.source = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    outcomes = {o.source: o for o in h.poll()}  # one batch: one transaction, at first
    assert "5 polls stored one by one after a failure" in caplog.text
    assert not outcomes["bad"].ok and "boom" in (outcomes["bad"].error or "")
    assert not outcomes["junk"].ok and outcomes["junk"].error
    assert {n: outcomes[n].new for n in ("a", "b", "c")} == {"a": 1, "b": 1, "c": 1}
    with sqlite3.connect(database) as conn:
        polls = dict(conn.execute("SELECT source, count(*) FROM polls GROUP BY source").fetchall())
        kept = dict(conn.execute("SELECT source, count(*) FROM entries GROUP BY source").fetchall())
        errors = dict(conn.execute("SELECT name, last_error FROM sources").fetchall())
    assert polls == dict.fromkeys(names, 1)  # every poll recorded, once
    assert kept == {"a": 1, "b": 1, "c": 1}
    assert "boom" in errors["bad"] and errors["junk"] and errors["a"] is None


def _files_and_rows(h: Harness) -> tuple[dict[str, tuple[int, int]], list[tuple[object, ...]]]:
    """Each article file's inode and mtime, and each entry row's change stamps."""
    files = {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in h.files()}
    with sqlite3.connect(h.config.settings.database) as conn:
        rows = conn.execute("SELECT key, seq, changed_at, path FROM entries ORDER BY key")
        return files, rows.fetchall()


def test_an_unchanged_repoll_rewrites_no_file_and_no_row(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    items = item("a", "Post") + item("b", "Other")
    path = feed_file("f.xml", rss(items))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    [first] = h.poll()
    assert first.new == 2
    before = _files_and_rows(h)
    assert len(before[0]) == 2 and len(before[1]) == 2
    # The same bytes (a pass, then a single poll as run's jobs make): not even parsed.
    [again] = h.poll()
    single = h.poller.poll_source(h.config.sources[0])
    assert again.not_modified and single.not_modified
    assert _files_and_rows(h) == before
    # Other bytes, the same entries: parsed, and found unchanged.
    feed_file("f.xml", rss(items, title="Renamed feed"))
    changed = h.poller.poll_source(h.config.sources[0])
    assert not changed.not_modified and changed.ok
    assert (changed.new, changed.updated, changed.unchanged) == (0, 0, 2)
    assert not changed.changes.files and not changed.changes.entries
    assert _files_and_rows(h) == before
