"""Copying an index into another database: a SQLite index to PostgreSQL, as a deployment
outgrows one machine (``aggregator db copy``), or to another SQLite file.

The source is read in one read transaction, so the copy is one consistent moment of it
even while a service keeps writing (SQLite's write-ahead log keeps that moment for the
reader). Rows go a batch at a time, never a whole table in memory, into one transaction
on the target: a copy that fails leaves no row there. Every table is copied, the secrets
and admin sessions too: a replica must accept the sessions already open.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.errors import StoreError
from aggregator.store import migrate
from aggregator.store.schema import metadata

BATCH = 1000  # rows read and written at a time


def copy_index(
    database: str,
    target: str,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] = lambda _table, _rows: None,
) -> dict[str, int]:
    """``copy_database`` between two databases named as ``settings.database`` is
    (``migrate.make_engine``).

    Raises:
        StoreError: as ``copy_database``; a database cannot be reached.
    """
    source, destination = migrate.make_engine(database), migrate.make_engine(target)
    try:
        return copy_database(source, destination, replace=replace, progress=progress)
    except SQLAlchemyError as exc:
        raise StoreError(f"the copy failed (no row was written to the target): {exc}") from exc
    finally:
        source.dispose()
        destination.dispose()


def copy_database(
    source: Engine,
    target: Engine,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] = lambda _table, _rows: None,
) -> dict[str, int]:
    """Copy every table of ``source`` into ``target``, both brought to this version's
    schema first; ``progress`` is told each table's count as it is done.

    Returns:
        The rows copied, by table, in the order copied.

    Raises:
        StoreError: the target holds rows and ``replace`` is not set (then nothing is
            written), or a database refuses.
    """
    migrate.upgrade(source)
    migrate.upgrade(target)
    counts: dict[str, int] = {}
    tables = metadata.sorted_tables  # dependency order (parents first)
    with source.connect() as reading, target.connect() as writing:
        if reading.dialect.name == "sqlite":
            # Deferred: the snapshot is taken at the first read and kept to the end.
            reading.exec_driver_sql("BEGIN")
        else:
            reading.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        holding = [
            t.name for t in tables if writing.execute(sa.select(1).select_from(t).limit(1)).first()
        ]
        if holding and not replace:
            raise StoreError(
                f"the target is not empty (rows in {', '.join(holding)}): copy into an empty "
                "database, or give --replace to delete the target's rows first"
            )
        for table in reversed(tables) if holding else ():
            writing.execute(sa.delete(table))
        for table in tables:
            counts[table.name] = _copy_table(reading, writing, table)
            progress(table.name, counts[table.name])
        if writing.dialect.name == "postgresql":
            _restart_sequences(writing)
        writing.commit()
        reading.rollback()
    return counts


def _copy_table(reading: Connection, writing: Connection, table: sa.Table) -> int:
    copied = 0
    rows = reading.execution_options(yield_per=BATCH).execute(
        sa.select(table).order_by(*table.primary_key.columns)
    )
    for batch in rows.mappings().partitions():
        writing.execute(sa.insert(table), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def _restart_sequences(writing: Connection) -> None:
    """Move each id sequence past the ids copied: rows inserted with their ids leave
    PostgreSQL's sequences at 1, and the target's next insert would take a copied id."""
    for table in metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        writing.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'COALESCE(MAX("{column.name}"), 0) + 1, false) FROM "{table.name}"'
            ),
            {"table": table.name, "column": column.name},
        )
