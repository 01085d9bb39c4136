"""A real PostgreSQL for the tests: the machine's, or a throwaway cluster of our own.

``AGGREGATOR_TEST_PG`` chooses the server:

* unset or ``auto``: the one answering on 127.0.0.1:5432 (user ``postgres``, trust
  authentication), else a throwaway cluster, as ``cluster`` below;
* ``cluster``: always a throwaway cluster: Debian's ``postgresql`` package's ``initdb``
  and ``pg_ctl`` (``tests/install-tools`` installs it) in a temporary folder, on a free
  port, run as the ``postgres`` user when the tests run as root (initdb refuses root),
  stopped and deleted at the end of the session;
* a ``postgresql://`` URL: that server (its user may create databases).

The session makes one database of its own on that server and drops it at the end. Each
test that asks gets a schema of its own in it (its URL sets ``search_path``): fresh,
since a schema is emptied (every row deleted, every sequence restarted) when its test
ends, and only then given to another test. Emptying a dozen small tables costs a few
milliseconds; creating the tables again would cost a few hundred per test, and
dropping a database a checkpoint. A test's connections carry the database's and the
schema's names as their ``application_name`` (``pg_test_123.test_4``: unique on the
server, which other sessions share): those a test left open are ended before its schema
is emptied.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ENVIRONMENT = "AGGREGATOR_TEST_PG"
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def answers(url: str) -> bool:
    """True when a PostgreSQL server takes a connection at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database, for the session."""
    wanted = os.environ.get(ENVIRONMENT, "auto")
    if wanted.startswith("postgresql://"):
        yield wanted
    elif wanted == "cluster" or not answers(LOCAL):
        with cluster() as url:
            yield url
    elif wanted == "auto":
        yield LOCAL
    else:
        raise RuntimeError(f"{ENVIRONMENT}={wanted!r}: give auto, cluster or a postgresql:// URL")


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[4]))
    if not found:
        raise RuntimeError(
            "no PostgreSQL answers on 127.0.0.1:5432 and Debian's postgresql package is not "
            "installed: run tests/install-tools"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port of 127.0.0.1, trust authentication,
    no fsync (its data dies with the session); its maintenance database's URL."""
    binaries = _binaries()
    folder = Path(tempfile.mkdtemp(prefix="aggregator-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]

    def run(program: str, *args: str) -> None:
        subprocess.run(
            [*run_as, str(binaries / program), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=True,
            timeout=120,
        )

    data, log = str(folder / "data"), str(folder / "log")
    port = _free_port()
    try:
        run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _collation(conn: psycopg.Connection[Any]) -> str:
    """A natural language's collation for the session's database, where the server has
    ICU: text then sorts as in most deployments (not byte by byte, as in SQLite and the
    C locale), so that a query relying on byte order fails here first."""
    found = conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'").fetchone()
    return "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'" if found else ""


class Databases:
    """The session's database on a server, and a fresh schema in it for each test."""

    def __init__(self, maintenance: str) -> None:
        self.maintenance = maintenance
        self.name = f"pg_test_{os.getpid()}"
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(self.name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 {}").format(
                    sql.Identifier(self.name), sql.SQL(_collation(conn))
                )
            )
        self.url = maintenance.rsplit("/", 1)[0] + "/" + self.name
        self._admin = psycopg.connect(self.url, autocommit=True)
        self._free: list[str] = []
        self._made = 0

    @contextlib.contextmanager
    def schema(self) -> Iterator[str]:
        """A SQLAlchemy URL whose connections work in a schema of their own, empty."""
        if self._free:
            name = self._free.pop()
        else:
            self._made += 1
            name = f"test_{self._made}"
            self._admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        base = self.url.replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}?options=-csearch_path%3D{name}&application_name={self._label(name)}"
        self._empty(name)
        self._free.append(name)

    def _label(self, name: str) -> str:
        """The ``application_name`` of a schema's connections: unique on the server, as
        other sessions (other checkouts' tests) end their own schemas' connections."""
        return f"{self.name}.{name}"

    def _empty(self, name: str) -> None:
        """End the connections the test left open, then delete every row of the
        schema's tables (but the schema's revision: its tables are still the ones it
        made) and restart its sequences, in one transaction."""
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            (self._label(name),),
        )
        tables = self._admin.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (name,)
        ).fetchall()
        sequences = self._admin.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s", (name,)
        ).fetchall()
        with self._admin.transaction():
            for (table,) in tables:
                if table == "alembic_version":  # the tables are still at that revision
                    continue
                self._admin.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(name, table)))
            for (sequence,) in sequences:
                self._admin.execute(
                    "SELECT setval(%s::regclass, 1, false)", (f'"{name}"."{sequence}"',)
                )

    def close(self) -> None:
        """Drop the session's database (its connections ended first)."""
        self._admin.close()
        with psycopg.connect(self.maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
