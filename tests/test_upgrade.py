"""Upgrading from 0.1: the last release's index and posts folder, polled by today's code.

tests/data/upgrade/made-by-0.1 holds what aggregator 0.1.0 made of config.yaml's feeds
(its index as SQL text, its article files), made by tests/data/upgrade/make. The feeds
carry what this release reads differently: bylines, enclosures, untitled items, titles
that differ only in case or punctuation (0.1 gave them names Hugo confuses).

An existing article file keeps its name for good. The first poll after the upgrade (here
it parses every feed: they have no validators, and the copied config's paths differ)
or a rebuild may rewrite a file whose text changed, in place; from then on an unchanged
feed writes nothing, and a rebuild leaves every name alone. Run as a user runs it: the
command line, in a subprocess.

0.1 kept its index in a SQLite file only. The tests marked ``both_dialects`` also take
the upgraded index where docs/SCALING.md takes one, to PostgreSQL (``aggregator db
copy``, which upgrades it first), and poll it there: the names are kept by the index's
folds, looked up in each database's SQL.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DATA, index_rows
from test_cli import run

from aggregator.content.convert import fold_path
from aggregator.store.schema import SCHEMA_VERSION

UPGRADE = DATA / "upgrade"
MADE_BY_OLD = UPGRADE / "made-by-0.1"
OLD_FILES = sorted(
    p.relative_to(MADE_BY_OLD / "posts").as_posix() for p in (MADE_BY_OLD / "posts").rglob("*.md")
)
SOURCES = 3
ENTRIES = len(OLD_FILES)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The 0.1 project: its config, feeds, posts folder and index (loaded from the SQL)."""
    shutil.copy(UPGRADE / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(UPGRADE / "feeds", tmp_path / "feeds")
    shutil.copytree(MADE_BY_OLD / "posts", tmp_path / "posts")
    database = sqlite3.connect(tmp_path / "index.sqlite")
    database.executescript((MADE_BY_OLD / "index.sql").read_text(encoding="utf-8"))
    database.close()
    return tmp_path


@pytest.fixture
def index(project: Path, dialect: str, database: str) -> str:
    """The project's index, as its config names it: the 0.1 file, or on PostgreSQL the
    ``database`` fixture's schema, where ``aggregator db copy`` moved it (upgraded)."""
    if dialect == "sqlite":
        return str(project / "index.sqlite")
    copied = run("db", "copy", "--config", "config.yaml", "--to", database, cwd=project)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "database: index.sqlite" in text
    config.write_text(text.replace("database: index.sqlite", f"database: '{database}'", 1))
    (project / "index.sqlite").unlink()  # gone: whatever is read next is the copy
    return database


def aggregator(command: str, project: Path) -> str:
    """Run a command of today's code on the project; the last line it printed."""
    workers = ["--workers", "1"] if command in ("poll", "rebuild") else []
    result = run(command, "--config", "config.yaml", *workers, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()[-1]


def files(project: Path) -> dict[str, tuple[int, int]]:
    """Every article file: (inode, mtime). A write replaces a file (temp file + rename), so
    a file written again, even with the same bytes, has another inode."""
    posts = project / "posts"
    return {
        p.relative_to(posts).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in posts.rglob("*.md")
    }


def rows(database: str) -> list[tuple[str, str | None]]:
    """(path, fold) of every entry, by path as SQLite orders it (None first, then byte by
    byte: a PostgreSQL database's collation may order them otherwise)."""
    found = index_rows(database, "SELECT path, path_fold FROM entries")
    return sorted(found, key=lambda row: (row[0] is not None, row[0] or ""))


def schema_version(database: str) -> str:
    [(value,)] = index_rows(database, "SELECT value FROM meta WHERE key = 'schema_version'")
    return str(value)


def touch_feeds(project: Path) -> None:
    """Change every feed's bytes, not its entries: the next poll parses and decides again."""
    for feed in (project / "feeds").iterdir():
        with feed.open("a", encoding="utf-8") as f:
            f.write("\n")


def summary(new: int = 0, updated: int = 0, unchanged: int = 0, not_modified: int = 0) -> str:
    return (
        f"{SOURCES} sources, 0 failed, {not_modified} not modified, 0 paused; "
        f"{new} new, {updated} updated, {unchanged} unchanged"
    )


def test_the_made_by_0_1_data_shows_what_this_release_changes() -> None:
    # 0.1 gave titles that differ only in punctuation or case names Hugo confuses.
    folds = [fold_path(f) for f in OLD_FILES]
    assert len(set(folds)) < len(folds)
    assert "News/Example-Paper/Front-Page/untitled.md" in OLD_FILES
    sql = (MADE_BY_OLD / "index.sql").read_text(encoding="utf-8")
    assert "INSERT INTO \"meta\" VALUES('schema_version','3');" in sql
    assert "path_fold" not in sql


@pytest.mark.both_dialects
def test_a_poll_after_upgrading_keeps_every_name_and_the_next_writes_nothing(
    project: Path, index: str
) -> None:
    first = aggregator("poll", project)
    # Parsed again, nothing new: every old entry is recognised (some files rewritten in place).
    assert re.fullmatch(
        rf"{SOURCES} sources, 0 failed, 0 not modified, 0 paused; 0 new, \d+ updated, \d+ unchanged",
        first,
    ), first
    written = files(project)
    assert sorted(written) == OLD_FILES
    # The migration brought the index up to date: every path's fold is recorded.
    assert schema_version(index) == str(SCHEMA_VERSION)
    assert [path for path, _ in rows(index)] == sorted(OLD_FILES)
    assert all(fold == fold_path(path) for path, fold in rows(index))

    assert aggregator("poll", project) == summary(not_modified=SOURCES)
    assert files(project) == written
    touch_feeds(project)  # parsed and decided again: every entry is the same
    assert aggregator("poll", project) == summary(unchanged=ENTRIES)
    assert files(project) == written
    assert aggregator("rebuild", project) == summary(unchanged=ENTRIES)
    assert files(project) == written


@pytest.mark.both_dialects
@pytest.mark.usefixtures("index")
def test_a_new_entry_after_upgrading_does_not_take_a_name_an_old_one_folds_to(
    project: Path,
) -> None:
    aggregator("poll", project)
    written = files(project)
    news = project / "feeds" / "news.rss.xml"
    text = news.read_text(encoding="utf-8")
    news.write_text(
        text.replace(
            "<item>",
            "<item><title>THE RESTFUL WEB — AMAZON'S SQS</title><guid>restful-3</guid>"
            "<pubDate>Tue, 11 Jun 2024 08:00:00 GMT</pubDate>"
            "<description>Part three.</description></item>\n    <item>",
            1,
        ),
        encoding="utf-8",
    )
    # The other two feeds are as they were; the news feed's six items are the same.
    assert aggregator("poll", project) == summary(new=1, unchanged=6, not_modified=2)
    now = files(project)
    [added] = set(now) - set(written)
    assert re.fullmatch(
        r"News/Example-Paper/Front-Page/THE-RESTFUL-WEB-—-AMAZON'S-SQS-[0-9a-f]{8}\.md", added
    ), added
    assert {path: now[path] for path in written} == written


@pytest.mark.both_dialects
@pytest.mark.usefixtures("index")
def test_a_rebuild_first_after_upgrading_keeps_every_name(project: Path) -> None:
    # The rebuild reads the raw entries 0.1 stored, in their older format.
    first = aggregator("rebuild", project)
    assert re.fullmatch(
        rf"{SOURCES} sources, 0 failed, 0 not modified, 0 paused; 0 new, \d+ updated, \d+ unchanged",
        first,
    ), first
    assert sorted(files(project)) == OLD_FILES
    aggregator("poll", project)
    written = files(project)
    assert sorted(written) == OLD_FILES
    touch_feeds(project)
    assert aggregator("poll", project) == summary(unchanged=ENTRIES)
    assert files(project) == written


def test_folds_are_computed_again_after_an_older_version_used_the_index(project: Path) -> None:
    """SQLite only: 0.1, the older version here, kept its index in a SQLite file only
    (tests/test_postgres.py fills the folds on both databases)."""
    aggregator("poll", project)
    index = str(project / "index.sqlite")
    # What 0.1 does to an upgraded index: its rows carry no fold, its prune leaves the fold
    # of a path it clears, and it sets its own schema version.
    database = sqlite3.connect(project / "index.sqlite")
    with database:
        database.execute("UPDATE entries SET path_fold = NULL WHERE source = 'blog'")
        database.execute(
            "UPDATE entries SET path = NULL, pruned_at = last_seen WHERE source = 'podcast'"
        )
        database.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    database.close()
    assert any(fold is None for path, fold in rows(index) if path is not None)
    aggregator("prune", project)  # any command that opens the index
    assert schema_version(index) == str(SCHEMA_VERSION)
    assert all(fold == (fold_path(path) if path else None) for path, fold in rows(index))
