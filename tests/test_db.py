"""``aggregator db``: the schema's revision, upgrading it, and copying an index into
PostgreSQL (or another SQLite file), run as a user runs them: the command line, in a
subprocess, on an index made by real polls of a local server."""

from __future__ import annotations

import sqlite3
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, HarnessFactory, MakeConfig, item, rss
from pytest_httpserver import HTTPServer
from test_cli import run as aggregator

from aggregator.store import jobs, migrate, outbox
from aggregator.store.copy import copy_index
from aggregator.store.outbox import WRITE, OutboxItem
from aggregator.store.records import HookRun
from aggregator.store.schema import UTCDateTime, metadata

PASSWORD = "pg-s3cret"  # the server trusts 127.0.0.1: any password is accepted, none shown


@pytest.fixture
def index(
    tmp_path: Path, make_config: MakeConfig, harness: HarnessFactory, httpserver: HTTPServer
) -> Path:
    """An index with rows in every table: polled entries (two feeds, polled twice), a
    prune, an admin session and the session key, a hook run, a claim, a stored page (its
    body bytes), a departure (an entry moved to another category), an outbox row and a job."""
    for n in range(2):
        items = "".join(
            item(f"g{n}-{k}", f"Post {n}.{k} — ünïcode", f"<p>Body {k}</p>", date="")
            for k in range(30)
        )
        httpserver.expect_request(f"/f{n}").respond_with_data(
            rss(items), content_type="application/rss+xml"
        )
    sources = [
        {"name": f"feed{n}", "url": httpserver.url_for(f"/f{n}"), "categories": ["News", f"F{n}"]}
        for n in range(2)
    ]
    h = harness(make_config(sources, keep_max=25))
    h.poll()
    h.now += timedelta(hours=1)
    h.poll()
    h.store.session_key()
    h.store.start_admin_session("mark", FIXED_NOW, timedelta(days=1))
    h.store.record_hook_run(HookRun("command", "make site", FIXED_NOW, 1.5, ok=True, files=3))
    entries = metadata.tables["entries"]
    with h.store.transaction() as conn:
        conn.execute(sa.insert(metadata.tables["claims"]).values(claimed_at=FIXED_NOW, late=0.25))
        # An article a poller queued that no exporter has written yet.
        item_ = OutboxItem(WRITE, "News/F0/queued.md", "uid-queued", "---\ntitle: q\n---\n")
        outbox.append(conn, [item_], 1, FIXED_NOW)
        jobs.request(conn, jobs.REBUILD, FIXED_NOW, "dashboard")  # a rebuild asked for
        conn.execute(
            sa.insert(metadata.tables["pages"]).values(
                source="feed0", key="g0-29", fetched_at=FIXED_NOW, body=zlib.compress(b"<p>")
            )
        )
        conn.execute(
            sa.update(entries).where(entries.c.key == "g1-29").values(category_path="Moved")
        )
    h.close()
    return tmp_path


def plain_rows(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    """A table's rows as plain SQL reads them, times as aware datetimes (SQLite's text
    parsed; PostgreSQL's in the session's time zone: equal as instants), in key order."""
    times = {c.name for c in table.columns if isinstance(c.type, UTCDateTime)}
    with engine.connect() as conn:
        rows = [
            {
                c: datetime.fromisoformat(v) if c in times and isinstance(v, str) else v
                for c, v in r.items()
            }
            for r in conn.execute(sa.text(f'SELECT * FROM "{table.name}"')).mappings()
        ]
    # Sorted here: the two databases' collations order text differently.
    return sorted(rows, key=lambda r: tuple(r[c.name] for c in table.primary_key.columns))


def test_db_upgrade_and_current_say_the_revision_before_and_after(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "settings:\n  database: db/index.sqlite\nsources: []\n", encoding="utf-8"
    )
    head = migrate.HEAD
    current = aggregator("db", "current", cwd=tmp_path)
    assert current.returncode == 0, current.stderr
    assert current.stdout.endswith(
        f"db/index.sqlite: none (no schema revision yet; `aggregator db upgrade` makes {head})\n"
    )
    first = aggregator("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith(f"index.sqlite: revision none (no schema) -> {head}\n")
    again = aggregator("db", "upgrade", cwd=tmp_path)
    assert again.stdout.endswith(f"index.sqlite: at revision {head}, the newest: nothing to do\n")
    assert aggregator("db", "current", cwd=tmp_path).stdout.endswith(f"{head} (the newest)\n")
    with sqlite3.connect(tmp_path / "db" / "index.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00d'")
    newer = aggregator("db", "current", cwd=tmp_path)
    assert newer.stdout.endswith(
        f"f00d (unknown to this version (newest {head}): upgraded by a newer aggregator)\n"
    )
    refused = aggregator("db", "upgrade", cwd=tmp_path)
    assert refused.returncode == 1
    assert "upgraded by a newer version of aggregator" in refused.stderr
    # Any command that opens the index says so, and exits as on any store error.
    opened = aggregator("sources", cwd=tmp_path)
    assert opened.returncode == 1
    assert "upgraded by a newer version of aggregator" in opened.stderr


@pytest.fixture(params=["postgresql", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database to copy into: PostgreSQL (by URL, with a password) or a file."""
    if request.param == "sqlite":
        return str(tmp_path / "copy" / "index.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    # As a user may write it: psycopg 3 is the driver a plain postgresql:// means.
    return url.replace("+psycopg://postgres@", f"://postgres:{PASSWORD}@")


def test_db_copy_carries_every_row_and_the_target_goes_on_numbering(
    index: Path, target: str
) -> None:
    copied = aggregator("db", "copy", "--to", target, cwd=index)
    assert copied.returncode == 0, copied.stderr
    assert PASSWORD not in copied.stdout + copied.stderr
    source = migrate.make_engine(str(index / "db" / "index.sqlite"))
    destination = migrate.make_engine(target)
    counts = {}
    for table in metadata.sorted_tables:
        expected = plain_rows(source, table)
        counts[table.name] = len(expected)
        assert plain_rows(destination, table) == expected, table.name
    assert counts["entries"] == 60
    assert counts["polls"] == 4
    assert {name for name, count in counts.items() if not count} == set()
    assert copied.stdout.splitlines()[1:-1] == [
        f"{name}: {count} rows" for name, count in counts.items()
    ]
    with destination.begin() as conn:
        new_id = conn.execute(
            sa.insert(metadata.tables["polls"])
            .values(
                source="feed0",
                started_at=datetime.now(UTC),
                duration=0.1,
                new=0,
                updated=0,
                unchanged=0,
                failed=0,
                dropped=0,
            )
            .returning(metadata.tables["polls"].c.id)
        ).scalar_one()
    assert new_id == max(r["id"] for r in plain_rows(source, metadata.tables["polls"])) + 1
    source.dispose()
    destination.dispose()


def test_db_copy_refuses_a_target_with_rows_unless_told_to_replace_them(
    index: Path, target: str
) -> None:
    assert aggregator("db", "copy", "--to", target, cwd=index).returncode == 0
    again = aggregator("db", "copy", "--to", target, cwd=index)
    assert again.returncode == 1
    assert (
        "the target is not empty (rows in admin_sessions, claims, departures, entries,"
        in again.stderr
    )
    assert PASSWORD not in again.stdout + again.stderr
    replaced = aggregator("db", "copy", "--to", target, "--replace", cwd=index)
    assert replaced.returncode == 0, replaced.stderr
    assert "entries: 60 rows" in replaced.stdout


def test_a_copy_on_postgresql_copies_back_into_sqlite_row_for_row(
    index: Path, postgres_url: str, tmp_path: Path
) -> None:
    """The other way too (PostgreSQL read in one repeatable-read transaction)."""
    original = str(index / "db" / "index.sqlite")
    back = str(tmp_path / "back" / "index.sqlite")
    there = copy_index(original, postgres_url)
    assert copy_index(postgres_url, back) == there
    source, copied = migrate.make_engine(original), migrate.make_engine(back)
    for table in metadata.sorted_tables:
        assert plain_rows(copied, table) == plain_rows(source, table), table.name
    source.dispose()
    copied.dispose()
