"""What differs between the index's two databases, SQLite and PostgreSQL, in one place.

The store's statements are SQLAlchemy Core and compile for both; these are the few
spots where the SQL itself must differ:

* opening: a SQLite file (``settings.database`` a path, the default) or a PostgreSQL
  server (``postgresql+psycopg://...``, the ``aggregator[postgres]`` extra);
* upserts: each dialect has its own ``insert`` with the same ``on_conflict_*`` API
  (SQLite's ``INSERT OR IGNORE`` is PostgreSQL's ``ON CONFLICT DO NOTHING``);
* an IN list given as one JSON array parameter (``in_json``): SQLite's ``json_each``,
  PostgreSQL's ``json_array_elements_text``.

Times (``schema.UTCDateTime``) and the departures trigger are ``schema``'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from aggregator.redact import redact

#: ``scheme://`` at the start: a URL, not a path (a Windows drive has no ``//``).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

NO_FILE = (None, "", ":memory:")  # a SQLite URL without a file: an index gone at exit
SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"


def is_url(database: str) -> bool:
    """True when ``settings.database`` is a URL rather than a SQLite file's path."""
    return bool(_URL.match(database))


def database_url(database: str) -> sa.URL:
    """The SQLAlchemy URL of ``settings.database``: a path is a SQLite file;
    ``postgresql://`` means psycopg 3 (the only PostgreSQL driver we support).

    Raises:
        ValueError: neither a path nor a URL of SQLite or PostgreSQL (the message
            never shows a password).
    """
    if not is_url(database):
        return sa.URL.create("sqlite", database=database)
    try:
        url = sa.make_url(database)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"{redact(database)} is not a database URL") from exc
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite") and url.database not in NO_FILE:
        return url.set(drivername="sqlite")
    raise ValueError(
        f"database URL {redact(database)} is not supported: give a SQLite file's path, "
        "sqlite:///path, or postgresql+psycopg://user@host:port/database"
    )


def make_engine(url: sa.URL, *, connections: int) -> Engine:
    """An engine for ``url``; on PostgreSQL with a pool of ``connections`` (the claim
    loop's writer and readers, and the web threads), each checked before use, so that
    a server restart costs one failed check, not a failed request.

    SQLite keeps SQLAlchemy's defaults (a connection per thread, no network to lose).
    """
    if url.get_backend_name() == SQLITE:
        assert url.database is not None
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(url, connect_args={"timeout": 30})
    return sa.create_engine(
        url, pool_size=connections, max_overflow=connections, pool_pre_ping=True
    )


def database_error(exc: sa.exc.SQLAlchemyError, dialect: str) -> str:
    """What went wrong with the database, for a StoreError. On PostgreSQL a lost
    connection (the server restarted, an administrator ended the session) is said
    plainly, before the driver's own words, and no URL's password is shown."""
    if dialect == SQLITE:
        return f"database error: {exc}"
    text = redact(str(exc))
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return f"database error: the connection to the database was lost: {text}"
    return f"database error: {text}"


Upsert = postgresql.Insert | sqlite.Insert


def insert(conn: Connection | Engine, table: sa.Table) -> Upsert:
    """``INSERT`` with ``on_conflict_do_update``/``_nothing`` for the connection's
    database (both dialects' constructs have the same API)."""
    return insert_for(conn.dialect.name, table)


def insert_for(dialect: str, table: sa.Table) -> Upsert:
    """``insert`` by dialect name (for statements built once per dialect)."""
    if dialect == POSTGRESQL:
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: sa.Table) -> Upsert:
    """An ``INSERT`` that leaves a row whose key is taken as it is."""
    return insert(conn, table).on_conflict_do_nothing()


def in_json(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``column IN`` the values of a JSON array given as the parameter ``name``.

    One parameter however long the list: the statement is one string, built and cached
    once (an expanding parameter renders it again for every length, which costs more
    than a small feed's query). SQLite reads the array with ``json_each``, PostgreSQL
    with ``json_array_elements_text``.
    """
    return InJson(column, name)


class InJson(sa.sql.expression.ColumnElement[bool]):
    """``in_json``'s construct, compiled for each dialect below."""

    inherit_cache = True
    type = sa.Boolean()
    # A comparison, like ``x IN (...)``: without this, a dialect without booleans (SQLite)
    # gets ``... = 1``, which hides the IN from the planner (a scan, not the index).
    _is_implicitly_boolean = True
    # As SQLAlchemy declares it (an instance variable): what the compiled form depends
    # on, so that statements holding one are cached.
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012
        ("column", InternalTraversal.dp_clauseelement),
        ("parameter", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: sa.ColumnElement[Any], name: str) -> None:
        self.column = column
        self.parameter = sa.bindparam(name, type_=sa.String)


@compiles(InJson)
def _in_json_sqlite(element: InJson, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    values = compiler.process(element.parameter, **kw)
    return f"{column} IN (SELECT value FROM json_each({values}))"


@compiles(InJson, POSTGRESQL)
def _in_json_postgresql(element: InJson, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    values = compiler.process(element.parameter, **kw)
    return f"{column} IN (SELECT json_array_elements_text(CAST({values} AS json)))"
