"""Bringing a database's schema to this version's: Alembic's revisions, run at every open.

``Store`` calls ``upgrade`` before anything else, in every process, so two processes
opening one database together take turns: the first runs what is pending, the second
finds the database at head. The turn is a lock taken before looking: SQLite's write lock
(``BEGIN IMMEDIATE``), PostgreSQL's transaction-scoped advisory lock; the revisions run
in that same transaction (both engines' DDL is transactional) and a failure leaves the
database as it was. At head, an open costs one small query of ``alembic_version``.

An index made before Alembic (SQLite only: ``meta.schema_version`` 1 to 4, no
``alembic_version``) is first brought to the baseline revision by the legacy step below,
which makes the file look like one the baseline made (a fresh one, built in memory, is
its model), then stamped with it. A database stamped with a revision this version does
not know was upgraded by a newer version: it is refused, never downgraded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.errors import StoreError
from aggregator.store.dialects import SQLITE, database_url
from aggregator.store.dialects import make_engine as dialect_engine
from aggregator.store.schema import SCHEMA_VERSION, fill_path_folds, meta_table, sqlite_pragmas

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the revision a legacy index (schema_version 4) equals
# The newest revision: known without Alembic, whose import (~0.1 s) an open at head, the
# usual case, then skips. A new revision moves it (tests/test_migrations.py checks).
HEAD = "0004"
# Any number, the same in every process: the advisory lock's key ("aggregator").
ADVISORY_LOCK = 0x61676772

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Revisions:
    """A database's revision before and after ``upgrade`` (None: no schema yet)."""

    before: str | None
    after: str


def make_engine(database: str) -> Engine:
    """An engine for ``settings.database`` (``dialects.database_url``: a SQLite file's
    path, its folder made if missing, or a URL), with SQLite's pragmas, for the
    commands that open a database without a Store (``db``, ``copy``)."""
    url = database_url(database)
    engine = dialect_engine(url, connections=2)
    if url.get_backend_name() == SQLITE:
        sa.event.listen(engine, "connect", sqlite_pragmas)
    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: the revisions inside the package, ``connection``
    handed to ``migrations/env.py``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def made_on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for a database of ``dialect``: leaves out of its
    comparison what ``schema.py`` makes only on another dialect (``ddl_if``)."""

    def include(item: Any, _name: str | None, _kind: str, _reflected: bool, _to: Any) -> bool:
        # SQLAlchemy keeps the condition of ``ddl_if`` here; autogenerate does not read it.
        condition = getattr(item, "_ddl_if", None)
        if condition is None or condition.dialect is None:
            return True
        wanted = condition.dialect
        return dialect == wanted if isinstance(wanted, str) else dialect in wanted

    return include


@functools.cache
def _script() -> ScriptDirectory:
    # Read once per process: it imports every revision file.
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def upgrade_database(database: str) -> Revisions:
    """``upgrade`` the database ``settings.database`` names (``make_engine``).

    Raises:
        StoreError: as ``upgrade``, or the database cannot be reached.
    """
    return _on(database, upgrade, "cannot upgrade the database")


def current_revision(database: str) -> str | None:
    """``current`` of the database ``settings.database`` names.

    Raises:
        StoreError: the database cannot be reached.
    """
    return _on(database, current, "cannot read the database")


def _on(database: str, run: Callable[[Engine], T], failure: str) -> T:
    """``run`` on an engine of its own for ``database``; its errors as StoreError."""
    engine = make_engine(database)
    try:
        return run(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"{failure}: {exc}") from exc
    finally:
        engine.dispose()


def current(engine: Engine) -> str | None:
    """The database's revision (None: not stamped: empty, or made before Alembic)."""
    with engine.connect() as conn:
        return _stored_revision(conn)


def _stored_revision(conn: Connection) -> str | None:
    # Read here, not through Alembic's MigrationContext, which logs two lines at each open.
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine) -> Revisions:
    """Run the pending revisions (a legacy SQLite index first brought to the baseline).

    Raises:
        StoreError: the database was upgraded by a newer version of aggregator, or it
            holds tables but neither a revision nor a legacy schema version.
    """
    target = HEAD
    with engine.connect() as conn:
        _lock(conn)
        before = _stored_revision(conn)
        legacy = (
            _legacy_version(conn, before is not None) if conn.dialect.name == "sqlite" else None
        )
        if before == target and (legacy is None or legacy >= SCHEMA_VERSION):
            conn.rollback()  # nothing written: the lock is let go at once
            return Revisions(before, target)
        if before is not None and not known(before):
            raise StoreError(
                f"the database was upgraded by a newer version of aggregator (its schema is "
                f"at revision {before}; this version knows revisions up to {target}): "
                "install that version again, or restore a backup made before the upgrade"
            )
        if before is None and legacy is not None:
            _upgrade_legacy(conn, legacy)
            _stamp(conn, BASELINE)
        elif legacy is not None and legacy < SCHEMA_VERSION:
            # An older release wrote to this index after the upgrade: its rows have no
            # folds, and it set its own, lower, schema version.
            fill_path_folds(conn)
            _set_legacy_version(conn)
        elif before is None and sa.inspect(conn).get_table_names():
            raise StoreError(
                "the database holds tables but no schema revision: it is not an index "
                "made by aggregator"
            )
        _run(conn, "head")
        conn.commit()
    return Revisions(before, target)


def _run(conn: Connection, target: str) -> None:
    """Alembic's upgrade to ``target``, in ``conn``'s transaction."""
    from alembic import command

    command.upgrade(alembic_config(conn), target)


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn).stamp(_script(), revision)


def known(revision: str) -> bool:
    """Whether ``revision`` is one of this version's."""
    from alembic.util import CommandError

    try:
        return _script().get_revision(revision) is not None
    except CommandError:  # alembic's "Can't locate revision"
        return False


def _lock(conn: Connection) -> None:
    """Begin the transaction that holds the migration lock until it ends."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK)))
    else:
        raise StoreError(f"unsupported database: {conn.dialect.name}")


def _legacy_version(conn: Connection, stamped: bool) -> int | None:
    """``meta.schema_version``, as the releases before Alembic kept it (None: none).

    A ``stamped`` database has the table (the baseline makes it): not looked for.
    """
    if not stamped and not sa.inspect(conn).has_table("meta"):
        return None
    value = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).scalar()
    return None if value is None else int(value)


def _set_legacy_version(conn: Connection) -> None:
    # Kept at 4 for good: what an older release reads to know it meets a newer index.
    conn.execute(
        sa.update(meta_table)
        .where(meta_table.c.key == "schema_version")
        .values(value=str(SCHEMA_VERSION))
    )


# -- the legacy step (SQLite indexes made before Alembic) -------------------------------

# Indexes of earlier versions that the baseline's replace (each cost every poll's write).
OBSOLETE_INDEXES = ("ix_sources_status", "ix_sources_worst", "ix_claims_claimed_at")

# How a column added to an older database is filled (from ``raw_json``,
# ``ParsedEntry.to_json``; before schema 4 it had one author name, as "author"), so that
# feeds and ?author= show them at once, without a rebuild (pruned rows have none, and
# need none).
_FILLS = {
    ("entries", "category_path"): (
        "UPDATE entries SET category_path = (SELECT group_concat(value, char(31)) "
        "FROM json_each(entries.categories))"
    ),
    ("entries", "authors"): (
        "UPDATE entries SET authors = CASE "
        "WHEN json_type(raw_json, '$.authors') = 'array' "
        "AND json_array_length(raw_json, '$.authors') > 0 "
        "THEN json_extract(raw_json, '$.authors') "
        "WHEN json_type(raw_json, '$.author') = 'text' "
        "AND json_extract(raw_json, '$.author') != '' "
        "THEN json_array(json_object('email', NULL, 'name', json_extract(raw_json, '$.author'), "
        "'url', NULL)) END "
        "WHERE json_valid(raw_json)"
    ),
    ("entries", "enclosures"): (
        "UPDATE entries SET enclosures = json_extract(raw_json, '$.enclosures') "
        "WHERE json_valid(raw_json) AND json_type(raw_json, '$.enclosures') = 'array' "
        "AND json_array_length(raw_json, '$.enclosures') > 0"
    ),
}


@dataclass(frozen=True, slots=True)
class _Model:
    """What the baseline revision makes on SQLite: built once, in memory, by the
    revision itself."""

    #: sqlite_master's (type, name, sql) of each table, index and trigger, in creation order
    objects: tuple[tuple[str, str, str], ...]
    #: each table's columns: (name, declared type, NOT NULL, default)
    columns: dict[str, list[tuple[str, str, bool, str | None]]]


@functools.cache
def _baseline_sqlite() -> _Model:
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN")
            _run(conn, BASELINE)
            objects = [
                (str(r[0]), str(r[1]), str(r[2]))
                for r in conn.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master "
                    "WHERE sql IS NOT NULL AND name != 'alembic_version' ORDER BY rowid"
                )
            ]
            columns = {
                name: [
                    (str(c[1]), str(c[2]), bool(c[3]), c[4])
                    for c in conn.exec_driver_sql(f'PRAGMA table_info("{name}")')
                ]
                for kind, name, _ in objects
                if kind == "table"
            }
            conn.rollback()
    finally:
        engine.dispose()
    return _Model(tuple(objects), columns)


def _upgrade_legacy(conn: Connection, stored: int) -> None:
    """Make an index of an earlier release (``schema_version`` ``stored``) what the
    baseline makes: missing tables, columns (filled), indexes and the trigger; obsolete
    indexes dropped; the folds of the stored paths computed again."""
    model = _baseline_sqlite()
    present = {
        (str(r[0]), str(r[1])) for r in conn.exec_driver_sql("SELECT type, name FROM sqlite_master")
    }
    refold = stored < SCHEMA_VERSION
    for kind, table, sql in model.objects:
        if kind != "table":
            continue
        if (kind, table) not in present:
            conn.exec_driver_sql(sql)
            continue
        has = {r[1] for r in conn.exec_driver_sql(f'PRAGMA table_info("{table}")')}
        for name, declared, not_null, default in model.columns[table]:
            if name in has:
                continue
            # SQLite adds a NOT NULL column only with a default: every such one has one.
            extra = f" NOT NULL DEFAULT {default}" if not_null else ""
            conn.exec_driver_sql(f'ALTER TABLE {table} ADD COLUMN "{name}" {declared}{extra}')
            if (table, name) in _FILLS:
                conn.exec_driver_sql(_FILLS[table, name])
            refold = refold or (table, name) == ("entries", "path_fold")
    if refold:
        fill_path_folds(conn)
    for name in OBSOLETE_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for kind, name, sql in model.objects:  # after the fills: an index is faster made at once
        if kind in ("index", "trigger") and (kind, name) not in present:
            conn.exec_driver_sql(sql)
    _set_legacy_version(conn)
