"""Every role at once on one PostgreSQL: three pollers, two web replicas and one exporter,
each a process of its own, over a few thousand local feeds (issue 14).

The feed server logs every request (its path, the poller's User-Agent, when it came and
when its answer was made), so that what the pollers did is read from outside them. Half
way through, a poller holding claims is killed with SIGKILL. Then:

* no feed was ever fetched by two pollers at once (no two requests for one path overlap);
* the feeds the killed poller was fetching were fetched again, by another, after its lease;
* every entry exists once, and the exporter's files are exactly the kept entries';
* a new entry shows on both replicas, with the same ETag;
* an admin's pause, made on a replica while a poller fetched the source, stands.
"""

from __future__ import annotations

import http.cookiejar
import itertools
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from conftest import item, rss, wait_for
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

FEEDS = 2000
ITEMS = 2  # a feed's items on the first pass
DELAY = 0.02  # seconds each answer takes, so that polls overlap
VICTIM_DELAY = 0.5  # the victim's: when it is killed, its latest requests are in flight
POLLERS = ("poller-a", "poller-b", "poller-c")
VICTIM = "poller-b"
SECRET = "a distributed admin secret, long enough"
WAIT = 120.0  # at most, for a pass over every feed on a loaded 2-core machine

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"])


@dataclass
class Logged:
    """One request the feed server got: its path, the poller's User-Agent, and when it
    came and when its answer was made (None: still being made)."""

    path: str
    agent: str
    start: float
    end: float | None = None


class FeedServer:
    """``FEEDS`` small feeds at ``/f/N`` and one at ``/held`` (answered when the test
    says), each request logged."""

    def __init__(self) -> None:
        self.log: list[Logged] = []
        self.lock = threading.Lock()
        self.extra: dict[str, str] = {}  # path: an item added since the first pass
        self.release = threading.Event()  # /held answers once set
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        entry = Logged(request.path, request.user_agent.string, time.monotonic())
        with self.lock:
            self.log.append(entry)
        try:
            if request.path == "/held":
                self.release.wait(60)
            time.sleep(VICTIM_DELAY if entry.agent == VICTIM else DELAY)
            items = "".join(
                item(f"{request.path}#{n}", f"{request.path} post {n}") for n in range(ITEMS)
            )
            body = rss(items + self.extra.get(request.path, ""))
            return Response(body, content_type="application/rss+xml")(environ, start_response)
        finally:
            entry.end = time.monotonic()

    def requests(self) -> list[Logged]:
        with self.lock:
            return list(self.log)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


class Role:
    """An ``aggregator`` command in a process of its own, its output in a file."""

    def __init__(self, folder: Path, name: str, *args: str) -> None:
        self.name = name
        self.output = folder / f"{name}.log"
        with self.output.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


@pytest.fixture
def roles() -> Iterator[list[Role]]:
    started: list[Role] = []
    yield started
    for role in started:
        if role.process.poll() is None:
            role.process.kill()
            role.process.wait()


def write_config(folder: Path, name: str, database: str, feeds: FeedServer) -> Path:
    """One process's config: the same sources and database for all; its own User-Agent
    (the feed server's log tells the pollers apart by it)."""
    sources = [
        {"url": f"{feeds.base}/f/{n}", "name": f"f{n:04d}", "categories": ["Dist", f"c{n % 5}"]}
        for n in range(FEEDS)
    ]
    # First in the claims' order (all are due at once; then by name): held from the start.
    sources.append({"url": f"{feeds.base}/held", "name": "a-held", "categories": ["Dist", "held"]})
    settings = {
        "posts_dir": str(folder / "posts"),
        "database": database,
        "fetch": {"timeout": 2, "user_agent": name},  # a lease: 2 × (2 + 8 + 10) s
        # Every source due at once, none again during the test; the one host capped above
        # what the pollers can have in flight, so that none of them starves.
        "schedule": {"startup_spread": 0, "interval": "12h", "per_host": 64, "concurrency": 16},
        # The site's name behind the load balancer, trusted in a request's Host: the
        # feeds' links are made from it, the same from every replica.
        "server": {"admin_secret": SECRET, "trusted_hosts": ["news.example"]},
        "workers": 1,
    }
    path = folder / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump({"settings": settings, "sources": sources}, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def serving_at(role: Role) -> str:
    """The address a ``serve`` process listens on, once it does."""
    found = wait_for(
        lambda: re.search(r"serving on (http://\S+?)/?\s", role.text()), f"{role.name} serving"
    )
    return found.group(1)


class Admin:
    """A browser's session on a replica: logged in as the admin."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.post("/login", secret=SECRET)

    def csrf(self, page: str) -> str:
        with self.opener.open(self.base + page) as answer:
            match = re.search(r'name="csrf" value="([^"]+)"', answer.read().decode())
        assert match is not None, page
        return match.group(1)

    def post(self, path: str, **fields: str) -> None:
        token = self.csrf("/login" if path == "/login" else "/")
        data = urllib.parse.urlencode({"csrf": token, **fields}).encode()
        with self.opener.open(self.base + path, data=data) as answer:
            assert answer.status == 200, path  # after the redirect


def get(url: str) -> tuple[str, str]:
    """A feed's ETag and text, asked as through a load balancer: by the site's name."""
    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"Host": "news.example"})
    ) as answer:
        return answer.headers["ETag"], answer.read().decode()


def overlapping(requests: list[Logged]) -> list[tuple[Logged, Logged]]:
    """Pairs of requests for one path that were in flight at once."""
    by_path: dict[str, list[Logged]] = {}
    for r in requests:
        by_path.setdefault(r.path, []).append(r)
    found = []
    for same in by_path.values():
        same.sort(key=lambda r: r.start)
        for a, b in itertools.pairwise(same):
            if a.end is None or b.start < a.end:
                found.append((a, b))
    return found


def test_pollers_replicas_and_an_exporter_share_one_postgresql(
    tmp_path: Path, database: str, feeds: FeedServer, roles: list[Role]
) -> None:
    engine = sa.create_engine(database)

    def value(sql: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()

    configs = {
        name: write_config(tmp_path, name, database, feeds) for name in (*POLLERS, "web", "export")
    }
    synced = subprocess.run(
        [sys.executable, "-m", "aggregator", "sync-config", "--config", str(configs["export"])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert synced.returncode == 0, synced.stderr
    assert f"{FEEDS + 1} added" in synced.stdout

    exporter = Role(tmp_path, "export", "export", "--config", str(configs["export"]))
    replicas = [
        # One config for both replicas, as behind a load balancer (it is in their ETags).
        Role(tmp_path, name, "serve", "--config", str(configs["web"]), "--port", "0")
        for name in ("web-1", "web-2")
    ]
    roles += [exporter, *replicas]
    bases = [serving_at(r) for r in replicas]
    pollers = {
        name: Role(tmp_path, name, "poller", "--config", str(configs[name])) for name in POLLERS
    }
    roles += pollers.values()

    # An admin's pause on a replica while a poller fetches the source: it stands.
    wait_for(lambda: any(r.path == "/held" for r in feeds.requests()), "/held fetched")
    Admin(bases[1]).post("/admin/sources/a-held/pause")
    feeds.release.set()

    # Half way, a poller holding claims is killed.
    def cut_short() -> list[str]:
        """The victim's requests begun in the last half of its answers' delay: still in
        flight a moment from now."""
        soon = time.monotonic() - VICTIM_DELAY / 2
        return [
            r.path
            for r in feeds.requests()
            if r.agent == VICTIM and r.end is None and r.start > soon
        ]

    def victim_busy() -> bool:
        return len({r.path for r in feeds.requests()}) >= FEEDS // 2 and bool(cut_short())

    try:
        wait_for(victim_busy, "half the feeds fetched, the victim fetching", deadline=WAIT)
    except AssertionError:
        seen = feeds.requests()
        agents: dict[str, int] = {}
        for r in seen:
            agents[r.agent] = agents.get(r.agent, 0) + 1
        logs = "\n".join(f"{r.name}: {r.text()[-800:]}" for r in roles)
        raise AssertionError(f"{len({r.path for r in seen})} paths; {agents}\n{logs}") from None
    cut = cut_short()
    pollers[VICTIM].process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    pollers[VICTIM].process.wait()
    leased = value("SELECT count(*) FROM sources WHERE lease_token IS NOT NULL")
    assert cut and leased  # it died holding claims

    # Every source's poll recorded (but the held one's: seeing the pause, its poll may
    # have ended unrecorded).
    polled = "SELECT count(DISTINCT source) FROM polls WHERE source <> 'a-held'"
    try:
        wait_for(lambda: value(polled) == FEEDS, "every source polled", deadline=WAIT)
    except AssertionError:
        with engine.connect() as conn:
            missing = conn.execute(
                sa.text(
                    "SELECT name, status, lease_token, lease_until, next_poll_at, wake, now() "
                    "FROM sources WHERE name NOT IN (SELECT source FROM polls) LIMIT 5"
                )
            ).all()
        logs = "\n".join(f"{r.name}: {r.text()[-1500:]}" for r in roles)
        raise AssertionError(f"not polled: {missing}\n{logs}") from None
    wait_for(lambda: value("SELECT count(*) FROM outbox") == 0, "the outbox drained", deadline=WAIT)

    requests = feeds.requests()
    assert not overlapping(requests), overlapping(requests)[:3]
    for path in cut:  # fetched again after the lease, by a poller alive
        again = [r for r in requests if r.path == path and r.start > killed_at]
        assert again and all(r.agent != VICTIM for r in again), path
    assert value("SELECT count(*) FROM entries WHERE source <> 'a-held'") == FEEDS * ITEMS
    assert value("SELECT count(DISTINCT uid) FROM entries") == value("SELECT count(*) FROM entries")
    with engine.connect() as conn:
        paths = set(
            conn.execute(sa.text("SELECT path FROM entries WHERE path IS NOT NULL")).scalars()
        )
    files = {str(p.relative_to(tmp_path / "posts")) for p in (tmp_path / "posts").rglob("*.md")}
    assert files == paths
    with engine.connect() as conn:
        status, reason = conn.execute(
            sa.text("SELECT status, reason FROM sources WHERE name = 'a-held'")
        ).one()
    assert (status, reason) == ("paused", "paused by the admin")

    # A new entry: asked for on one replica, shown by both, with one ETag.
    feeds.extra["/f/7"] = item("/f/7#new", "Brand new post")
    Admin(bases[0]).post("/admin/sources/f0007/refresh")
    wait_for(
        lambda: value("SELECT count(*) FROM entries WHERE title = 'Brand new post'") == 1,
        "the new entry stored",
        deadline=WAIT,
    )
    stored_at = time.monotonic()
    feed = "/feeds/" + urllib.parse.quote("Dist/c2") + ".rss"
    answers: list[list[tuple[str, str]]] = []

    def both_show_it() -> bool:
        """Both replicas serve the new entry, the same bytes with the same validator (a
        cache may sit in front of both): a later change elsewhere in the category (the
        exporter's) may give one the newer version first, for up to a second."""
        answers.append([get(b + feed) for b in bases])
        (etag_a, text_a), (etag_b, text_b) = answers[-1]
        return "Brand new post" in text_a and (etag_a, text_a) == (etag_b, text_b)

    wait_for(both_show_it, "both replicas to show the new entry with one ETag")
    shown_after = time.monotonic() - stored_at
    print(f"both replicas showed the new entry, one ETag, {shown_after:.2f} s after its commit")

    for role in roles:
        if role is not pollers[VICTIM]:
            assert role.stop() == 0, role.text()[-2000:]
    engine.dispose()
