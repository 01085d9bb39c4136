"""The index on PostgreSQL (issue 14): ``settings.database`` as a URL, what the store
keeps there (aware times in ``timestamptz``, 64-bit ids), and its faults, reported
without a password. Against a real PostgreSQL (``tests/pg.py``); the store's behaviour
on both databases is in the files marked ``both_dialects``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW
from pg import Databases

from aggregator.config import parse_config
from aggregator.content.convert import fold_path
from aggregator.errors import ConfigError, StoreError
from aggregator.store import Store, claims
from aggregator.store.overview import Filters, source_page
from aggregator.store.schema import claims_table, entries_table, fill_path_folds, sources_table

PASSWORD = "pg-s3cret-pw"


def database_of(text: str, tmp_path: Path) -> str:
    return parse_config(f"settings:\n  database: '{text}'\n", "c.yaml", tmp_path).settings.database


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("data/x.sqlite", "{tmp}/data/x.sqlite"),  # a path, as always
        ("sqlite:///data/x.sqlite", "{tmp}/data/x.sqlite"),  # the same, as a URL
        ("sqlite:////srv/x.sqlite", "/srv/x.sqlite"),
        ("postgresql://agg@db.example:5433/news", "postgresql+psycopg://agg@db.example:5433/news"),
        ("postgresql+psycopg://agg:pw@db/news", "postgresql+psycopg://agg:pw@db/news"),
    ],
)
def test_the_database_is_a_path_or_a_url(tmp_path: Path, given: str, expected: str) -> None:
    assert database_of(given, tmp_path) == expected.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            f"mysql://agg:{PASSWORD}@db/news",
            "c.yaml:2: settings.database: database URL scheme 'mysql' is not supported: give "
            "a SQLite file's path, sqlite:///path, or postgresql+psycopg://user@host:port/database",
        ),
        (
            f"postgresql+asyncpg://agg:{PASSWORD}@db/news",
            "c.yaml:2: settings.database: database URL scheme 'postgresql+asyncpg' is not "
            "supported: give a SQLite file's path, sqlite:///path, or "
            "postgresql+psycopg://user@host:port/database",
        ),
        (
            f"postgresql://agg:{PASSWORD}@db",
            "c.yaml:2: settings.database: a postgresql URL needs a database name (.../aggregator)",
        ),
        (
            "sqlite://",
            "c.yaml:2: settings.database: a sqlite URL needs a file's path "
            "(sqlite:///data/index.sqlite)",
        ),
    ],
)
def test_an_unknown_database_url_is_a_config_error_without_its_password(
    tmp_path: Path, given: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        database_of(given, tmp_path)
    assert caught.value.problems == [message]
    assert PASSWORD not in caught.value.report()


def test_a_server_that_cannot_be_reached_is_a_store_error_without_the_password(
    tmp_path: Path,
) -> None:
    with pytest.raises(StoreError) as caught:
        Store(f"postgresql://agg:{PASSWORD}@127.0.0.1:1/news", str(tmp_path / "posts"))
    assert str(caught.value).startswith("cannot open the database postgresql+psycopg://")
    assert "127.0.0.1" in str(caught.value) and PASSWORD not in str(caught.value)


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_times_are_timestamptz_and_come_back_aware_utc(
    tmp_path: Path, database: str, dialect: str
) -> None:
    store = Store(database, str(tmp_path / "posts"))
    try:
        eastern = datetime(2026, 1, 2, 8, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5)))
        with store.transaction() as conn:
            claims.add_missing(conn, {"a": ("https://a.example/", eastern)})
            conn.exec_driver_sql("SET TIME ZONE 'America/New_York'")  # not the server's
            when = conn.execute(sa.select(sources_table.c.next_poll_at)).scalar_one()
        assert when == eastern and when.tzinfo == UTC
        columns = sa.text(
            "SELECT table_name || '.' || column_name, data_type FROM "
            "information_schema.columns WHERE table_schema = current_schema()"
        )
        with store.reading() as conn:
            kinds: dict[str, str] = {str(row[0]): str(row[1]) for row in conn.execute(columns)}
        assert kinds["sources.next_poll_at"] == "timestamp with time zone"
        assert kinds["entries.id"] == kinds["polls.id"] == kinds["claims.id"] == "bigint"
        assert kinds["hook_runs.id"] == "bigint"
    finally:
        store.close()


def cut_off(store: Store, postgres: Databases) -> None:
    """A transaction whose connection an administrator ends before its query."""
    with store.transaction() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute(sa.select(claims_table.c.id))


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_a_lost_connection_is_a_store_error_and_the_next_transaction_works(
    tmp_path: Path, database: str, dialect: str, postgres: Databases
) -> None:
    """An administrator ends the store's session mid-transaction (as a server restart
    would): that transaction fails with a StoreError saying so; the pool checks the
    next connection first, and the store carries on."""
    store = Store(database, str(tmp_path / "posts"))
    try:
        with pytest.raises(StoreError) as caught:
            cut_off(store, postgres)
        assert "the connection to the database was lost" in str(caught.value)
        with store.transaction() as conn:
            claims.add_missing(conn, {"a": ("https://a.example/", FIXED_NOW)})
        assert store.source_names() == ["a"]
        assert store.health() == []
    finally:
        store.close()


def test_claims_lock_their_candidates_skipping_locked_rows_on_postgresql() -> None:
    """FOR UPDATE SKIP LOCKED on PostgreSQL; nothing on SQLite (one writer at a time)."""
    from sqlalchemy.dialects import postgresql, sqlite

    t = sources_table
    query = sa.select(t.c.name).limit(4).with_for_update(skip_locked=True)
    on_postgresql = query.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    assert "FOR UPDATE SKIP LOCKED" in str(on_postgresql)
    assert "FOR UPDATE" not in str(query.compile(dialect=sqlite.dialect()))


@pytest.mark.both_dialects
def test_the_folds_of_stored_paths_are_computed_again(tmp_path: Path, database: str) -> None:
    """On SQLite by a Python function SQLite calls, elsewhere row by row (a migration's)."""
    store = Store(database, str(tmp_path / "posts"))
    paths = ["A/Ünïcode-Title.md", "A/release-NOTES.md", None, "新闻/标题.md"]
    rows = [
        {"source": "s", "key": f"k{n}", "alt_key": f"a{n}", "uid": f"u{n}", "path": path}
        | dict.fromkeys(("date", "first_seen", "last_seen"), FIXED_NOW)
        for n, path in enumerate(paths)
    ]
    e = entries_table
    try:
        with store.transaction() as conn:
            conn.execute(sa.insert(e), rows)
            fill_path_folds(conn, batch=3)
        with store.reading() as conn:
            found = dict(conn.execute(sa.select(e.c.key, e.c.path_fold)).all())
    finally:
        store.close()
    assert found == {
        f"k{n}": None if path is None else fold_path(path) for n, path in enumerate(paths)
    }
    assert found["k0"] != paths[0]  # folded, not copied


@pytest.mark.both_dialects
def test_a_source_with_a_very_long_url_is_synced_and_found(tmp_path: Path, database: str) -> None:
    """A B-tree entry on PostgreSQL holds at most 2,704 bytes: no index may hold a whole
    URL twice (it once held the URL and the search text made from it)."""
    url = "https://news.example.com/" + "".join(f"{n:04x}" for n in range(400))  # no repeats
    config = parse_config(
        f"sources:\n  - {{url: '{url}', categories: [A], name: long}}\n", "c.yaml", tmp_path
    )
    store = Store(database, str(tmp_path / "posts"))
    try:
        assert store.sync_sources(config.sources, FIXED_NOW).added == ("long",)
        with store.reading() as conn:
            page = source_page(
                conn, Filters(search=url[900:912]), offset=0, limit=10, since=FIXED_NOW
            )
        assert [row["name"] for row in page.rows] == ["long"]
    finally:
        store.close()


def test_a_sqlite_url_is_the_file_it_names(tmp_path: Path) -> None:
    path = tmp_path / "db" / "index.sqlite"
    first = Store(str(path), str(tmp_path / "posts"))
    with first.transaction() as conn:
        claims.add_missing(conn, {"a": ("https://a.example/", FIXED_NOW)})
    first.close()
    second = Store(f"sqlite:///{path}", str(tmp_path / "posts"))
    try:
        assert second.dialect == "sqlite" and second.database == str(path)
        assert second.source_names() == ["a"]
    finally:
        second.close()


def test_a_json_in_list_is_searched_along_the_index_on_sqlite(tmp_path: Path) -> None:
    """``dialects.in_json`` is a comparison: SQLite, which has no booleans, once got
    ``... IN (...) = 1``, and scanned every entry of the index for each poll."""
    from sqlalchemy.dialects import sqlite

    from aggregator.store.index import _FOLDS_TAKEN, _STORED_ENTRIES

    Store(str(tmp_path / "index.sqlite"), str(tmp_path / "posts")).close()
    database = sqlite3.connect(tmp_path / "index.sqlite")
    try:
        for statement, index in (
            # The (source, key) constraint's index, whatever number SQLite gave it.
            (_STORED_ENTRIES, "(source=? AND key=?)"),
            (_FOLDS_TAKEN, "ix_entries_path_fold (path_fold=?)"),
        ):
            sql = str(statement.compile(dialect=sqlite.dialect()))
            values = ['["a"]'] * sql.count("?")
            plan = " ".join(row[3] for row in database.execute("EXPLAIN QUERY PLAN " + sql, values))
            assert "SEARCH entries USING" in plan and index in plan, plan
    finally:
        database.close()
