"""The schema's revisions (store/migrations/): what they make on SQLite and PostgreSQL is
what schema.py describes; an index of every release before Alembic ends as a new one.

The comparison is Alembic's own (autogenerate's ``compare_metadata``): it is what fails
when schema.py changes without a revision that makes the change.

tests/data/legacy/vN-COMMIT.sql: the empty index each schema version's first commit made
(and the last commit before Alembic), dumped: ``git archive COMMIT``, open a ``Store`` with
that code, ``sqlite3 index.sqlite .dump``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import DATA

from aggregator.errors import StoreError
from aggregator.store import Store, migrate
from aggregator.store.schema import SCHEMA_VERSION, metadata

LEGACY = sorted((DATA / "legacy").glob("v*.sql"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on an empty database of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = migrate.make_engine(url)
    yield made
    made.dispose()


def differences(engine: sa.Engine) -> list[Any]:
    """What autogenerate would write into a new revision for this database."""
    with engine.connect() as conn:
        return list(compare_metadata(context(conn), metadata))


def context(conn: sa.Connection) -> MigrationContext:
    """Alembic's context, as ``migrations/env.py`` configures it."""
    options = {"compare_type": True, "include_object": migrate.made_on(conn.dialect.name)}
    return MigrationContext.configure(conn, opts=options)


def test_head_is_the_newest_revision_and_the_only_one() -> None:
    """HEAD is how an open at head knows it is, without loading Alembic: move it along
    with each new revision."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_heads() == [migrate.HEAD]


def test_the_revisions_make_what_schema_py_describes(engine: sa.Engine) -> None:
    assert migrate.upgrade(engine) == migrate.Revisions(None, migrate.HEAD)
    assert differences(engine) == []
    assert migrate.current(engine) == migrate.HEAD


def test_the_comparison_sees_a_change_of_schema_py_without_a_revision(engine: sa.Engine) -> None:
    """The guard above can fail: a column of schema.py that no revision made (here taken
    away from the database afterwards) is reported."""
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE entries DROP COLUMN headimg"))
    assert [(d[0], d[2], d[3].name) for d in differences(engine)] == [
        ("add_column", "entries", "headimg")
    ]


def test_the_departures_trigger_notes_an_entry_leaving_its_category(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entries, departures = metadata.tables["entries"], metadata.tables["departures"]
    row = {
        "source": "s",
        "key": "k",
        "alt_key": "a",
        "uid": "u",
        "date": at,
        "first_seen": at,
        "last_seen": at,
        "category_path": "News\x1fWorld",
        "seq": 1,
        "changed_at": at,
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(entries).values(row))
        for seq in (2, 3):
            conn.execute(sa.update(entries).values(category_path=f"Moved{seq}", seq=seq))
        conn.execute(sa.update(entries).values(title="no move", seq=4))
    with engine.connect() as conn:
        left = conn.execute(sa.select(departures).order_by(departures.c.category_path)).all()
    assert [tuple(r) for r in left] == [("Moved2", 3, at), ("News\x1fWorld", 2, at)]


def test_concurrent_first_opens_take_turns(engine: sa.Engine) -> None:
    """Four opens at once of one new database: one makes the schema, the others wait for
    its lock and find it made (without the lock their CREATE TABLEs fail)."""
    start = threading.Barrier(4)
    results: list[migrate.Revisions | BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            results.append(migrate.upgrade(engine))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = migrate.HEAD
    assert sorted(results, key=str) == sorted(
        [migrate.Revisions(None, head)] + [migrate.Revisions(head, head)] * 3, key=str
    )


def test_a_database_upgraded_by_a_newer_version_is_refused_not_downgraded(
    engine: sa.Engine,
) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(StoreError, match=r"upgraded by a newer version of aggregator.*f00d"):
        migrate.upgrade(engine)
    assert migrate.current(engine) == "f00d"
    assert differences(engine) == []  # nothing was dropped or altered


def test_a_database_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (body TEXT)")
    engine = migrate.make_engine(str(path))
    with pytest.raises(StoreError, match="not an index made by aggregator"):
        migrate.upgrade(engine)
    engine.dispose()


# -- indexes made before Alembic (SQLite) --------------------------------------------------


def shape(database: Path) -> dict[str, Any]:
    """A SQLite database's schema, whatever order its columns were added in: each table's
    columns, its indexes (named, or the columns of the unnamed ones), its triggers."""
    conn = sqlite3.connect(database)
    try:
        found: dict[str, Any] = {}
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "alembic_version"
        ]
        for table in tables:
            # (name, type, not null, default, primary key), by name
            columns = sorted(r[1:] for r in conn.execute(f'PRAGMA table_info("{table}")'))
            indexes = set()
            for _, name, unique, origin, partial in conn.execute(f'PRAGMA index_list("{table}")'):
                keys = tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{name}")'))
                indexes.add((name if origin == "c" else origin, keys, unique, partial))
            found[table] = (columns, indexes)
        found["sql"] = {
            r[0]: " ".join(r[1].split())
            for r in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
                "AND sql IS NOT NULL"
            )
        }
        found["meta"] = dict(conn.execute("SELECT key, value FROM meta"))
        return found
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shape of a new index, as ``Store`` makes it today."""
    folder = tmp_path_factory.mktemp("fresh")
    Store(str(folder / "index.sqlite"), str(folder / "posts")).close()
    return shape(folder / "index.sqlite")


def test_every_schema_version_before_alembic_has_its_index_here() -> None:
    versions = {p.name.split("-")[0] for p in LEGACY}
    assert versions == {f"v{n}" for n in range(1, SCHEMA_VERSION + 1)}


@pytest.mark.parametrize("dump", LEGACY, ids=lambda p: p.stem)
def test_an_index_made_before_alembic_ends_as_a_new_one(
    dump: Path, tmp_path: Path, fresh: dict[str, Any]
) -> None:
    database = tmp_path / "index.sqlite"
    with sqlite3.connect(database) as old:
        old.executescript(dump.read_text(encoding="utf-8"))
    Store(str(database), str(tmp_path / "posts")).close()
    assert shape(database) == fresh
    engine = migrate.make_engine(str(database))
    assert migrate.current(engine) == migrate.HEAD
    assert differences(engine) == []
    engine.dispose()


def test_an_index_at_head_is_opened_without_running_a_revision(tmp_path: Path) -> None:
    database = tmp_path / "index.sqlite"
    Store(str(database), str(tmp_path / "posts")).close()
    engine = migrate.make_engine(str(database))
    with engine.connect() as conn:
        changes = conn.exec_driver_sql("PRAGMA data_version").scalar()
        # data_version moves when another connection commits: the upgrade's own engine.
        assert migrate.upgrade(engine) == migrate.Revisions(migrate.HEAD, migrate.HEAD)
        assert conn.exec_driver_sql("PRAGMA data_version").scalar() == changes
    engine.dispose()


def test_an_open_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    """Every command and process opens the index: at head it reads one row, and the
    import of Alembic (a tenth of a second) is left for an open with work to do."""
    database, posts = str(tmp_path / "index.sqlite"), str(tmp_path / "posts")
    Store(database, posts).close()
    script = (
        "import sys; from aggregator.store import Store; Store(sys.argv[1], sys.argv[2]).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    opened = subprocess.run(
        [sys.executable, "-c", script, database, posts],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert opened.stdout == "[]\n"
