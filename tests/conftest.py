"""Shared fixtures: real files on tmp_path, a real SQLite file or PostgreSQL schema, a
real HTTP server.

A test marked ``both_dialects`` (or in a module that is) runs twice, on SQLite and on
PostgreSQL (``tests/pg.py`` says which server): its ``dialect`` fixture is each in turn,
``database`` the index it should open, and ``make_config`` writes that into the config.
Other tests run on SQLite only.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import yaml
from pg import Databases, server
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.config import Config, is_database_url, load_config
from aggregator.models import SourceOutcome
from aggregator.poll.pipeline import Clock, Poller, utcnow
from aggregator.poll.scheduler import Service
from aggregator.store import Store
from aggregator.store.dialects import database_url
from aggregator.store.schema import metadata

DIALECTS = ("sqlite", "postgresql")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "feeds"
DATA = Path(__file__).resolve().parent / "data"
FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

MakeConfig = Callable[..., Path]
FeedFile = Callable[[str, bytes | str], Path]
T = TypeVar("T")


class ManualClock:
    """A clock a test moves by hand (the web app's ``Clock``): nothing waits for time."""

    def __init__(self, start: datetime = FIXED_NOW) -> None:
        self.start = start
        self.elapsed = 0.0  # seconds advanced so far

    def now(self) -> datetime:
        """Wall-clock UTC: ``start`` plus the seconds advanced."""
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        """Monotonic seconds: an arbitrary origin plus the seconds advanced."""
        return 1000.0 + self.elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.elapsed += seconds

    def advance_to(self, when: datetime) -> None:
        """Move time forward to ``when`` (no change if it is past already)."""
        self.elapsed = max(self.elapsed, (when - self.start).total_seconds())


def write_config(folder: Path, sources: list[dict[str, Any]], **settings: Any) -> Path:
    """Write ``folder``/config.yaml from Python data and return its path."""
    # Local sources in tests live in the folder or among the bundled examples.
    fetch = {"file_roots": [str(folder), str(EXAMPLES)], **settings.pop("fetch", {})}
    data = {
        "settings": {
            "posts_dir": "posts",
            "database": "db/index.sqlite",
            "fetch": fetch,
            **settings,
        },
        "sources": sources,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests marked ``both_dialects`` on each database (unless the test names
    its own: ``@pytest.mark.parametrize("dialect", ["postgresql"])``)."""
    named = any(
        "dialect" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize")
    )
    marked = metafunc.definition.get_closest_marker("both_dialects") is not None
    if "dialect" in metafunc.fixturenames and marked and not named:
        metafunc.parametrize("dialect", DIALECTS)


@pytest.fixture
def dialect() -> str:
    """The index's database: SQLite, unless the test is marked ``both_dialects``."""
    return "sqlite"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Databases]:
    """The session's PostgreSQL database (started only when a test needs it)."""
    with server() as url:
        databases = Databases(url)
        yield databases
        databases.close()


@pytest.fixture
def database(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> Iterator[str]:
    """The index a test opens: a SQLite file's path on tmp_path, or the URL of a fresh
    PostgreSQL schema."""
    if dialect == "sqlite":
        yield str(tmp_path / "db" / "index.sqlite")
        return
    postgres: Databases = request.getfixturevalue("postgres")
    with postgres.schema() as url:
        yield url


def stored_bytes(store: Store) -> bytes:
    """Everything the index holds, as bytes to search: the SQLite file (and its log), or
    every row of every table as PostgreSQL prints it."""
    if store.dialect == "sqlite":
        files = Path(store.database).parent.glob(Path(store.database).name + "*")
        return b"".join(path.read_bytes() for path in sorted(files))
    with store.reading() as conn:
        tables = conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).scalars()
        return b"\n".join(
            "\n".join(
                conn.exec_driver_sql(f'SELECT CAST(t AS text) FROM "{name}" t').scalars()
            ).encode()
            for name in list(tables)
        )


def index_rows(database: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` selects from the index at ``database`` (a SQLite file's path or a
    PostgreSQL URL), read on a connection of its own that is closed before returning:
    a test looks at what a subprocess committed, as another process would."""
    engine = sa.create_engine(database_url(database), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def lose_index(database: str) -> None:
    """Forget everything the index holds, as if its file were deleted (a crash before
    any commit, a lost disk): the SQLite file and its log go, a PostgreSQL schema's rows.
    No Store may be open on it."""
    if not is_database_url(database):
        for path in Path(database).parent.glob(Path(database).name + "*"):
            path.unlink()
        return
    engine = sa.create_engine(database)
    try:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(sa.delete(table))
    finally:
        engine.dispose()


@pytest.fixture
def make_config(tmp_path: Path, dialect: str, database: str) -> MakeConfig:
    """Write a config.yaml into tmp_path from Python data and return its path (its
    index the ``database`` fixture's on PostgreSQL; on SQLite ``db/index.sqlite``)."""
    if dialect == "sqlite":
        return partial(write_config, tmp_path)
    return partial(write_config, tmp_path, database=database)


@pytest.fixture
def feed_file(tmp_path: Path) -> FeedFile:
    """Write a feed document into tmp_path/feeds and return its path."""

    def write(name: str, content: bytes | str) -> Path:
        folder = tmp_path / "feeds"
        folder.mkdir(exist_ok=True)
        path = folder / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return write


@pytest.fixture
def sina_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled Sina example feed (tests may edit it)."""
    folder = tmp_path / "feeds"
    folder.mkdir(exist_ok=True)
    return Path(shutil.copy(EXAMPLES / "sina-finance-china.rss.xml", folder / "sina.xml"))


class Harness:
    """A config, its store and a poller with a settable clock."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.now = FIXED_NOW
        self.reload()

    def reload(self) -> None:
        self.config: Config = load_config(self.config_path)
        self.store = Store(self.config.settings.database, self.config.settings.posts_dir)
        self.poller = Poller(self.config, self.store, clock=lambda: self.now, workers=1)

    @property
    def posts(self) -> Path:
        return Path(self.config.settings.posts_dir)

    def poll(self) -> list[SourceOutcome]:
        return self.poller.poll_sources([s for s in self.config.sources if s.enabled])

    def files(self) -> list[Path]:
        return sorted(p for p in self.posts.rglob("*.md"))

    def close(self) -> None:
        self.poller.close()
        self.store.close()


HarnessFactory = Callable[[Path], Harness]


@pytest.fixture
def harness() -> Iterator[HarnessFactory]:
    made: list[Harness] = []

    def make(config_path: Path) -> Harness:
        h = Harness(config_path)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def rss(items: str, *, title: str = "Test feed", encoding: str = "utf-8") -> str:
    """A small RSS 2.0 document around the given <item> elements."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/</link>"
        "<description>test</description>"
        f"{items}</channel></rss>"
    )


def item(
    guid: str | None,
    title: str,
    body: str = "<p>Body</p>",
    *,
    link: str | None = None,
    date: str = "Mon, 01 Jan 2024 10:00:00 GMT",
) -> str:
    """One RSS <item>."""
    parts = [f"<title><![CDATA[{title}]]></title>"]
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if link is not None:
        parts.append(f"<link>{link}</link>")
    if date:
        parts.append(f"<pubDate>{date}</pubDate>")
    parts.append(f"<description><![CDATA[{body}]]></description>")
    return "<item>" + "".join(parts) + "</item>"


def wait_for(predicate: Callable[[], T | None], what: str, deadline: float = 60.0) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after
    ``deadline`` s.

    A wait for a subprocess to get somewhere, never a measure of speed.
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def threaded_httpserver() -> Iterator[HTTPServer]:
    """A local HTTP server that answers requests in parallel (a held one blocks no other)."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


class Gate:
    """Holds a local server's requests until the test lets them through, and counts them.

    Wrap a handler with ``held``; the test lets requests through (``let_through``,
    ``open``) and waits for the counts (``wait``), which change under one condition
    variable: "the k-th request is in flight" is an event the test waits on, not a guess
    made after a sleep.
    """

    HOLD = 60.0  # at most, a request is held (a failed test must not hang the server)

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.arrived = 0  # requests that reached the handler
        self.active = 0  # requests inside the handler now
        self.peak = 0  # the most requests inside the handler at once
        self._passes = 0  # requests allowed through and not yet arrived
        self._open = False  # every request goes through

    def held(self, respond: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``respond``, called once the gate lets the request through."""

        def handler(request: Request) -> Response:
            self._enter()
            try:
                return respond(request)
            finally:
                with self._changed:
                    self.active -= 1
                    self._changed.notify_all()

        return handler

    def _enter(self) -> None:
        with self._changed:
            self.arrived += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._open or self._passes > 0, self.HOLD)
            if not self._open and self._passes > 0:
                self._passes -= 1

    def let_through(self, count: int = 1) -> None:
        """Let ``count`` more requests through (held ones first)."""
        with self._changed:
            self._passes += count
            self._changed.notify_all()

    def open(self) -> None:
        """Let every request through, held and future."""
        with self._changed:
            self._open = True
            self._changed.notify_all()

    def reset(self, passes: int = 0) -> None:
        """Close the gate and zero the counts; ``passes`` requests will go through."""
        with self._changed:
            assert self.active == 0, "reset while requests are in flight"
            self.arrived = self.peak = 0
            self._passes = passes
            self._open = False

    def wait(self, predicate: Callable[[Gate], bool], what: str, deadline: float = 60.0) -> None:
        """Wait until ``predicate(self)`` holds; woken by every change of the counts."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), deadline):
                raise AssertionError(f"gave up waiting for {what}")


def start_aggregator(
    args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``aggregator *args`` as a user would, its standard error into ``log``.

    It leads a session of its own, so the processes it starts can be found (by their
    session id) even after it died.
    """
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "aggregator", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def start_run(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `aggregator run` as a user would; return the process and its base URL."""
    process = start_aggregator(["run", "--config", str(config)], config.parent, log, env)
    try:
        line = wait_for(
            lambda: next((x for x in log.read_text().splitlines() if "serving on" in x), None),
            "the server to start",
        )
    except AssertionError:
        process.kill()
        raise
    return process, line.split("serving on ", 1)[1].strip()


# -- services ---------------------------------------------------------------------------


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """The services a test opens (``open_service``): shut down and closed after it."""
    made: list[Service] = []
    yield made
    for service in made:
        service.shutdown(wait=True)
        service.store.close()


def force_render_key(poller: Poller, key: str) -> None:
    """Give every configured source of ``poller`` another render key (as an upgrade or
    new render settings would), so the next poll reads bodies again."""
    poller.sources = {
        s.key: dataclasses.replace(poller.resolved(s), render_key=key)
        for s in poller.config.sources
    }


def open_service(path: Path, made: list[Service], clock: Clock = utcnow) -> Service:
    """A service over the config at ``path``, its store opened, on ``clock``, with a
    seeded random (``services`` closes it)."""
    config = load_config(path)
    store = Store(config.settings.database, config.settings.posts_dir)
    service = Service(path, config, store, clock=clock, rng=random.Random(5))
    made.append(service)
    return service


@pytest.fixture
def served_feeds(httpserver: HTTPServer) -> list[str]:
    """Three small RSS feeds on the local server (``/f0`` to ``/f2``), a post each."""
    urls = []
    for n in range(3):
        httpserver.expect_request(f"/f{n}").respond_with_data(
            rss(item(f"g{n}", f"Post {n}")), content_type="application/rss+xml"
        )
        urls.append(httpserver.url_for(f"/f{n}"))
    return urls


# -- PostgreSQL -------------------------------------------------------------------------

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty database on the machine's PostgreSQL (dropped after the
    test); the test is skipped, saying why, where none answers."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install '.[postgres]'")
    name = f"alembic_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        server.dispose()
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 as user postgres: {exc}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        server.dispose()
