"""Hostile feeds and careless operators: each attack of docs/RELIABILITY.md as a test.

Every feed is served by a real HTTP server on 127.0.0.1 (or read from tmp_path); each
test ends by checking what was recorded and that nothing else was touched.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import multiprocessing
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import EXAMPLES, FeedFile, Harness, HarnessFactory, MakeConfig, item, rss, wait_for
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.config import parse_config
from aggregator.errors import ConfigError, FetchError
from aggregator.poll.fetch import NO_OPTIONS, Fetched, Fetcher, FetchOptions, is_private_address
from aggregator.poll.policy import LOCAL_FAULT_RETRY
from aggregator.store.faults import is_local_os_fault
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

HEAD = '<rss version="2.0"><channel><title>t</title><link>http://x.example/</link><description>d</description>'


def one_source(
    httpserver: HTTPServer,
    make_config: MakeConfig,
    harness: HarnessFactory,
    body: bytes | str | Callable[[Request], Response],
    **settings: object,
) -> Harness:
    if callable(body):
        httpserver.expect_request("/feed").respond_with_handler(body)
    else:
        httpserver.expect_request("/feed").respond_with_data(
            body, content_type="application/rss+xml"
        )
    return harness(
        make_config(
            [{"url": httpserver.url_for("/feed"), "categories": ["H"], "name": "h"}], **settings
        )
    )


# -- XML attacks -----------------------------------------------------------------------


def test_billion_laughs_does_not_expand(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">' for n in range(9)
    )
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]>{HEAD}'
        + item("1", "&j;")
        + "</channel></rss>"
    )
    h = one_source(httpserver, make_config, harness, body)
    [outcome] = h.poll()
    text = "".join(p.read_text(encoding="utf-8") for p in h.files())
    assert "aaaaaaaaaaaaaaaaaaaa" not in text
    assert all(p.stat().st_size < 10_000 for p in h.files())
    assert outcome.ok or "not a usable feed" in str(outcome.error)


def test_quadratic_blowup_does_not_expand(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "{"A" * 50_000}">]>{HEAD}'
        + item("1", "&x;" * 5_000)
        + "</channel></rss>"
    )
    h = one_source(httpserver, make_config, harness, body)
    h.poll()
    assert sum(p.stat().st_size for p in h.files()) < 200_000  # not 250 MB of A


def test_external_entities_read_no_file(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>{HEAD}'
        + item("1", "leak &xxe;", "<p>&xxe;</p>")
        + "</channel></rss>"
    )
    h = one_source(httpserver, make_config, harness, body)
    h.poll()
    assert all("TOP-SECRET" not in p.read_text(encoding="utf-8") for p in h.files())
    assert all("TOP-SECRET" not in str(r) for r in h.store.entries())


def test_external_dtd_and_entities_are_never_fetched(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    fetched: list[str] = []

    def noted(body: str) -> Callable[[Request], Response]:
        """A handler that answers ``body`` and notes the path it was asked for."""

        def handler(request: Request) -> Response:
            fetched.append(request.path)
            return Response(body)

        return handler

    httpserver.expect_request("/evil.dtd").respond_with_handler(noted('<!ENTITY x "pwned">'))
    httpserver.expect_request("/entity").respond_with_handler(noted("pwned"))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{httpserver.url_for("/evil.dtd")}" '
        f'[<!ENTITY remote SYSTEM "{httpserver.url_for("/entity")}"> '
        f'<!ENTITY % param SYSTEM "{httpserver.url_for("/evil.dtd")}"> %param;]>'
        f"{HEAD}" + item("1", "t &remote; &x;") + "</channel></rss>"
    )
    h = one_source(httpserver, make_config, harness, body)
    h.poll()
    assert fetched == []
    assert all("pwned" not in p.read_text(encoding="utf-8") for p in h.files())


# -- size ------------------------------------------------------------------------------


def test_endless_body_is_cut_at_the_cap(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    def endless(_request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            yield (f'<?xml version="1.0"?>{HEAD}').encode()
            while True:
                yield b"<item><title>x</title></item>" * 1000

        return Response(chunks(), content_type="application/rss+xml")

    h = one_source(httpserver, make_config, harness, endless, fetch={"max_bytes": 2_000_000})
    [outcome] = h.poll()
    assert not outcome.ok
    assert "larger than the 2000000-byte limit" in str(outcome.error)
    assert h.files() == []


def test_huge_feed_is_capped_at_max_entries(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    """Four times the default cap shows the cap; bench/hugefeed parses 100,000 entries."""
    items = "".join(f"<item><title>t{n}</title><guid>g{n}</guid></item>" for n in range(2_000))
    h = one_source(
        httpserver, make_config, harness, f'<?xml version="1.0"?>{HEAD}{items}</channel></rss>'
    )
    assert h.config.settings.fetch.max_entries == 500  # the shipped default is what we check
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 500
    assert any("1500 entries beyond the first 500 ignored" in w for w in outcome.warnings)
    assert {r["title"] for r in h.store.entries()} == {f"t{n}" for n in range(500)}


def test_huge_title_deep_nesting_and_many_images(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    deep = "<div>" * 100_000 + "deep" + "</div>" * 100_000
    images = "".join(
        f'<img src="https://img.example/{n}.jpg" width="10" height="10">' for n in range(5_000)
    )
    body = (
        f'<?xml version="1.0"?>{HEAD}'
        + item("t", "标" * 1_000_000, "<p>ok</p>")
        + item("d", "Deep", deep)
        + item("i", "Images", images)
        + "</channel></rss>"
    )
    h = one_source(httpserver, make_config, harness, body)
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 3
    names = [p.name for p in h.files()]
    assert all(len(n.encode()) <= 200 for n in names)
    titles = {r["title"] for r in h.store.entries()}
    assert "标" * 999 + "…" in titles
    images_file = next(p for p in h.files() if p.name == "Images.md")
    assert images_file.read_text(encoding="utf-8").count("<img") == 5_000


# -- garbage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expect_ok"),
    [
        (
            f'<?xml version="1.0"?>{HEAD}'.encode()
            + b"<item><title>a\x00b\x01c</title><guid>1</guid></item></channel></rss>",
            True,
        ),
        (
            f'<?xml version="1.0"?>{HEAD}'.encode()
            + b"<item><title>bad \xed\xa0\x80 surrogate \xff</title><guid>1</guid></item></channel></rss>",
            True,
        ),
        (b'{"error": "not found", "status": 404}', False),
        (bytes(range(256)) * 40, False),
        (b"\xef\xbb\xbf" + b"\x00" * 5000, False),
    ],
    ids=[
        "NUL and controls",
        "lone surrogate and invalid UTF-8",
        "a JSON body, no JSON Feed",
        "binary noise",
        "BOM then NULs",
    ],
)
def test_garbage_is_recorded_or_cleaned(
    httpserver: HTTPServer,
    make_config: MakeConfig,
    harness: HarnessFactory,
    body: bytes,
    expect_ok: bool,
) -> None:
    h = one_source(httpserver, make_config, harness, body)
    [outcome] = h.poll()
    assert outcome.ok is expect_ok, outcome
    for path in h.files():
        text = path.read_text(encoding="utf-8")  # valid UTF-8, or this raises
        assert "\x00" not in text and "\x01" not in text
    if not expect_ok:
        assert (h.store.source_state("h") or {})["last_error"]


NUL_RSS = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Fe&#0;ed</title>'
    "<link>https://x.example/</link><description>d</description><item>"
    '<title>a&#0;b</title><guid isPermaLink="false">g&#x0;1</guid><link>https://x.example/a&#0;</link>'
    "<author>me&#0;@x.example (M&#0;e)</author><category>t&#0;ag</category>"
    '<enclosure url="https://x.example/a.mp3" type="audio/mpeg&#0;" length="1"/>'
    "<description>&lt;p&gt;x&amp;#0;y&lt;/p&gt;</description></item></channel></rss>"
)
NUL_JSON = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Fe\x00ed",
        "items": [
            {
                "id": "g\x001",
                "title": "a\x00b",
                "url": "https://x.example/a\x00",
                "authors": [{"name": "M\x00e"}],
                "tags": ["t\x00ag"],
                "content_html": "<p>x\x00y</p>",
            }
        ],
    }
)


@pytest.mark.parametrize("body", [NUL_RSS, NUL_JSON], ids=["RSS references", "JSON escapes"])
def test_nul_characters_never_reach_the_index(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory, body: str
) -> None:
    """PostgreSQL's text cannot hold a NUL: one in a title once failed the whole poll
    there ("database error: ... cannot contain NUL"). Dropped at the parse, on both."""
    h = one_source(httpserver, make_config, harness, body)
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1, outcome
    [row] = h.store.entries()
    assert (row["title"], row["key"], row["tags"]) == ("ab", "g1", '["tag"]')
    assert not [name for name, value in row.items() if "\x00" in str(value)]
    state = h.store.source_state("h") or {}
    assert state["title"] == "Feed"
    assert "\x00" not in h.files()[0].read_text(encoding="utf-8")


# -- SSRF and file roots ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("0.0.0.0", True),
        ("100.64.0.1", True),
        ("::1", True),
        ("fc00::1", True),
        ("fe80::1", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_private_addresses(address: str, blocked: bool) -> None:
    assert is_private_address(ipaddress.ip_address(address)) is blocked


def test_block_private_addresses_refuses_loopback(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data(rss(item("1", "x")))
    with pytest.raises(FetchError, match="private or local address"):
        Fetcher(block_private=True).fetch(httpserver.url_for("/feed"))
    assert httpserver.log == []  # refused before connecting


def test_block_private_addresses_checks_every_redirect(httpserver: HTTPServer) -> None:
    # Only 127.0.0.2 counts as private here, so the first hop (127.0.0.1) is allowed.
    port = httpserver.port
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.2:{port}/internal"}
    )
    fetcher = Fetcher(block_private=True, is_blocked=lambda a: str(a) == "127.0.0.2")
    with pytest.raises(FetchError, match=r"127\.0\.0\.2, a private or local address"):
        fetcher.fetch(httpserver.url_for("/start"))
    assert [r.path for r, _ in httpserver.log] == ["/start"]


def test_redirect_to_a_file_url_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/start").respond_with_data(
        "", status=301, headers={"Location": "file:///etc/passwd"}
    )
    with pytest.raises(FetchError, match="redirect to a non-http URL refused"):
        Fetcher().fetch(httpserver.url_for("/start"))


def test_file_sources_outside_the_roots_are_config_errors(tmp_path: Path) -> None:
    text = "sources:\n  - url: /etc/passwd\n    categories: [x]\n"
    with pytest.raises(ConfigError, match=r"is outside settings\.fetch\.file_roots"):
        parse_config(text, "c.yaml", tmp_path)
    allowed = parse_config(
        "settings:\n  fetch:\n    file_roots: [/etc]\n" + text, "c.yaml", tmp_path
    )
    assert allowed.sources[0].url == "/etc/passwd"


def test_symlink_out_of_the_roots_is_refused_when_read(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    link = tmp_path / "feeds" / "sneaky.xml"
    link.symlink_to("/etc/hostname")
    with pytest.raises(FetchError, match=r"outside settings\.fetch\.file_roots"):
        Fetcher(file_roots=[str(tmp_path)]).fetch(str(link))


# -- faults ----------------------------------------------------------------------------


def _hold_lock(database: str, seconds: float, ready: multiprocessing.synchronize.Event) -> None:
    connection = sqlite3.connect(database, timeout=1)
    connection.execute("BEGIN EXCLUSIVE")
    ready.set()
    time.sleep(seconds)
    connection.rollback()
    connection.close()


@pytest.mark.parametrize("dialect", ["sqlite"])  # SQLite's file lock and busy timeout
def test_database_locked_by_another_process_for_a_while(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Waited")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.store.count_entries()  # the database exists
    ready = multiprocessing.get_context("spawn").Event()
    locker = multiprocessing.get_context("spawn").Process(
        target=_hold_lock, args=(h.config.settings.database, 2.0, ready)
    )
    locker.start()
    try:
        assert ready.wait(30)
        [outcome] = h.poll()  # waits for the lock (SQLite busy timeout), then goes on
    finally:
        locker.join(30)
    assert outcome.ok and outcome.new == 1
    assert h.store.count_entries() == 1


def test_clock_jumping_backwards(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "One")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    [first] = h.poll()
    h.now -= timedelta(days=3)  # the clock jumps back
    feed_file("f.xml", rss(item("a", "One") + item("b", "Two")))
    [second] = h.poll()
    assert first.ok and second.ok and second.new == 1
    assert second.next_poll_at is not None and second.next_poll_at > h.now
    assert len(h.files()) == 2


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_full_disk_is_a_clear_error_and_recovers(
    make_config: MakeConfig,
    harness: HarnessFactory,
    feed_file: FeedFile,
    tmp_path: Path,
) -> None:
    posts = tmp_path / "posts"
    if not _mount_tmpfs(posts, "64k"):
        pytest.skip(
            "cannot mount a tmpfs here (needs root); docs/RELIABILITY.md has the manual run"
        )
    try:
        big = "<p>" + "字" * 20_000 + "</p>"
        path = feed_file("f.xml", rss("".join(item(f"g{n}", f"Post {n}", big) for n in range(8))))
        h = harness(
            make_config(
                [{"url": str(path), "categories": ["A"], "name": "s"}],
                schedule={"max_failures": 2, "jitter": 0},
            )
        )
        health = create_app(h.config, h.store).test_client()
        # Many polls against the full disk: the disk's fault, never the source's.
        for _ in range(4):
            [outcome] = h.poll()
            assert not outcome.ok and outcome.local_fault
            assert "No space left on device" in str(outcome.error)
            assert outcome.next_poll_at is not None
            assert outcome.next_poll_at <= h.now + timedelta(seconds=LOCAL_FAULT_RETRY)
            h.now += timedelta(minutes=10)
        state = h.store.source_state("s") or {}
        assert state["failures"] == 0
        assert state["status"] not in ("erroring", "paused")
        answer = health.get("/healthz")
        assert answer.status_code == 503
        assert answer.get_json()["status"] == "degraded"
        assert any("No space left on device" in r for r in answer.get_json()["reasons"])
        assert "No space left on device" in health.get("/").get_data(as_text=True)
        for file in h.files():  # whatever was written is whole
            assert file.read_text(encoding="utf-8").rstrip().endswith("</div>")
        assert not list(posts.rglob(".*.tmp"))
        kept = h.store.count_entries()
        assert kept == len(h.files())
        subprocess.run(["mount", "-o", "remount,size=4m", str(posts)], check=True)
        # Healthy again as soon as there is space, before anything new is written.
        assert health.get("/healthz").status_code == 200
        [again] = h.poll()  # the next poll after space returns writes the rest
        assert again.ok and again.new == 8 - kept
        assert len(h.files()) == 8
        answer = health.get("/healthz")
        assert answer.status_code == 200
        assert answer.get_json()["status"] == "ok" and answer.get_json()["reasons"] == []
    finally:
        subprocess.run(["umount", str(posts)], check=False)


@pytest.mark.parametrize("dialect", ["sqlite"])  # the index's own file on a full disk
def test_full_database_disk_degrades_the_service_not_the_source(
    make_config: MakeConfig,
    harness: HarnessFactory,
    feed_file: FeedFile,
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    if not _mount_tmpfs(db, "320k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    h: Harness | None = None
    try:
        big = "<p>" + "字" * 20_000 + "</p>"
        path = feed_file("f.xml", rss("".join(item(f"g{n}", f"Post {n}", big) for n in range(8))))
        h = harness(
            make_config(
                [{"url": str(path), "categories": ["A"], "name": "s"}],
                schedule={"max_failures": 1},
            )
        )
        health = create_app(h.config, h.store).test_client()
        [outcome] = h.poll()
        assert not outcome.ok and outcome.local_fault
        assert "database or disk is full" in str(outcome.error)
        assert outcome.status != "paused"
        answer = health.get("/healthz")
        assert answer.status_code == 503
        assert any(r.startswith("database: ") for r in answer.get_json()["reasons"])
        subprocess.run(["mount", "-o", "remount,size=16m", str(db)], check=True)
        h.now += timedelta(minutes=10)
        [again] = h.poll()
        assert again.ok and again.new + again.unchanged == 8
        assert h.store.count_entries() == 8
        assert (h.store.source_state("s") or {})["failures"] == 0
        assert health.get("/healthz").status_code == 200
    finally:
        if h is not None:
            h.close()  # the database is on the tmpfs: closed before it is unmounted
        subprocess.run(["umount", str(db)], check=False)


def test_read_only_folder(
    make_config: MakeConfig,
    harness: HarnessFactory,
    feed_file: FeedFile,
    tmp_path: Path,
) -> None:
    posts = tmp_path / "posts"
    if not _mount_tmpfs(posts, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(posts)], check=True)
        path = feed_file("f.xml", rss(item("a", "Post")))
        h = harness(make_config([{"url": str(path), "categories": ["A"], "name": "s"}]))
        [outcome] = h.poll()
        assert not outcome.ok and "Read-only file system" in str(outcome.error)
        assert h.store.count_entries() == 0
        subprocess.run(["mount", "-o", "remount,rw", str(posts)], check=True)
        h.now += timedelta(hours=1)
        [again] = h.poll()
        assert again.ok and again.new == 1
    finally:
        subprocess.run(["umount", str(posts)], check=False)


def _damage_middle_pages(database: Path, pages: int = 4) -> bytes:
    """Write garbage over some pages in the middle of a SQLite file; return the result."""
    data = bytearray(database.read_bytes())
    page = 4096
    start = (len(data) // page // 2) * page
    noise = random.Random(9).randbytes(page * pages)
    data[start : start + len(noise)] = noise[: len(data) - start]
    database.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("dialect", ["sqlite"])  # a SQLite file's pages, damaged
def test_damaged_database_is_refused_at_start(
    make_config: MakeConfig, feed_file: FeedFile, tmp_path: Path
) -> None:
    items = "".join(item(f"g{n}", f"Post {n}", "<p>" + "正文" * 300 + "</p>") for n in range(60))
    config = make_config([{"url": str(feed_file("f.xml", rss(items))), "categories": ["A"]}])
    poll = [sys.executable, "-m", "aggregator", "poll", "--config", str(config)]
    first = subprocess.run(poll, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    database = tmp_path / "db" / "index.sqlite"
    assert not database.with_name("index.sqlite-wal").exists()  # folded in at close
    damaged = _damage_middle_pages(database)
    result = subprocess.run(poll, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert f"the database {database} is damaged" in result.stderr
    assert ".recover" in result.stderr and "posts_dir are kept" in result.stderr
    assert database.read_bytes() == damaged  # nothing was written into it
    assert len(list((tmp_path / "posts").rglob("*.md"))) == 60  # the articles are kept


def test_healthz_checks_the_posts_folder(
    make_config: MakeConfig, harness: HarnessFactory, tmp_path: Path
) -> None:
    posts = tmp_path / "posts"
    if not _mount_tmpfs(posts, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        h = harness(
            make_config([{"url": str(EXAMPLES / "example-blog.atom.xml"), "categories": ["A"]}])
        )
        client = create_app(h.config, h.store).test_client()
        assert client.get("/healthz").status_code == 200
        subprocess.run(["mount", "-o", "remount,ro", str(posts)], check=True)
        answer = client.get("/healthz")
        assert answer.status_code == 503
        # An anonymous visitor learns which setting, not where the machine keeps it.
        reason = "posts folder: settings.posts_dir is not writable"
        assert answer.get_json()["reasons"] == [reason]
        assert reason in client.get("/").get_data(as_text=True)
        subprocess.run(["mount", "-o", "remount,rw", str(posts)], check=True)
        assert client.get("/healthz").status_code == 200
    finally:
        subprocess.run(["umount", str(posts)], check=False)
    posts.rmdir()
    posts.write_text("a file where the posts folder should be")
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert {k: answer.get_json()[k] for k in ("status", "reasons")} == {
        "status": "degraded",
        "reasons": ["posts folder: settings.posts_dir is missing or not a folder"],
    }


# -- found in review ---------------------------------------------------------------------


def test_dates_before_1970_are_not_trusted(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    atom = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>x</id>'
        "<updated>0099-01-01T00:00:00Z</updated><entry><title>Ancient</title><id>a1</id>"
        "<updated>0099-01-01T00:00:00Z</updated><content>old</content></entry></feed>"
    )
    h = one_source(httpserver, make_config, harness, atom)
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1
    [row] = h.store.entries()
    assert row["date"] == h.now  # first seen, not year 99
    assert len(h.store.published()) == 1


def test_iframe_allow_list_cannot_be_bypassed() -> None:
    from aggregator.content.clean import CleanOptions, clean_html

    options = CleanOptions([], ["www.youtube.com"])
    for src in (
        "https://evil.example\\@www.youtube.com/",
        "https://evil.example@www.youtube.com/",
        "https://www.youtube.com\t.evil.example/",
    ):
        assert "<iframe" not in clean_html(f'<iframe src="{src}"></iframe>', None, options).html, (
            src
        )
    assert (
        "<iframe"
        in clean_html('<iframe src="https://www.youtube.com/embed/x"></iframe>', None, options).html
    )


def test_invalid_redirect_location_is_a_recorded_error(
    make_config: MakeConfig, harness: HarnessFactory
) -> None:
    # A raw server: werkzeug itself refuses to send such a Location header.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 301 Moved\r\nLocation: http://[oops/\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        h = harness(
            make_config(
                [{"url": f"http://127.0.0.1:{port}/feed", "categories": ["H"], "name": "h"}]
            )
        )
        [outcome] = h.poll()
    finally:
        thread.join(10)
        listener.close()
    assert not outcome.ok and "invalid redirect location" in str(outcome.error)


class RawServer:
    """Answers each connection with the next of ``answers``, bytes as given (werkzeug
    refuses to send a NUL in a header); keeps the requests' heads."""

    def __init__(self, answers: list[bytes]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)  # the loop looks at ``closed`` this often
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/feed"
        self.heads: list[bytes] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(answers,))
        self.thread.start()

    def _serve(self, answers: list[bytes]) -> None:
        pending = list(answers)
        while pending and not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:  # no request yet (a failed test sends none)
                continue
            with connection:
                connection.settimeout(None)
                self.heads.append(connection.recv(65536))
                connection.sendall(pending.pop(0))

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.listener.close()


def test_nul_in_response_headers_is_a_space_as_rfc_9110_says(
    make_config: MakeConfig, harness: HarnessFactory
) -> None:
    """A NUL in an ETag, a Last-Modified or a reason phrase once failed the poll on
    PostgreSQL (its text cannot hold one): replaced by a space (RFC 9110 §5.5)."""
    body = rss(item("g1", "Fine")).encode()
    ok = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: "a\x00b"\r\n'
        b"Last-Modified: Mon, 01 Jan 2024 10:00:00\x00GMT\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    failing = b"HTTP/1.1 503 Go\x00Away\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    server = RawServer([ok, failing])
    try:
        h = harness(make_config([{"url": server.url, "categories": ["H"], "name": "h"}]))
        [first] = h.poll()
        assert first.ok and first.new == 1, first
        state = h.store.source_state("h") or {}
        assert (state["etag"], state["last_modified"]) == ('"a b"', "Mon, 01 Jan 2024 10:00:00 GMT")
        h.now += timedelta(days=1)
        [second] = h.poll()
    finally:
        server.close()
    assert b'If-None-Match: "a b"\r\n' in server.heads[1]
    assert not second.ok and second.error is not None
    assert second.error.endswith("HTTP 503 Go Away"), second.error
    assert (h.store.source_state("h") or {})["last_error"] == second.error


def test_an_unexpected_error_is_recorded_not_raised(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    good = feed_file("good.xml", rss(item("a", "Fine")))
    h = harness(
        make_config(
            [
                {"url": str(good), "categories": ["A"], "name": "good"},
                {"url": str(good), "categories": ["B"], "name": "bad"},
            ]
        )
    )
    real = h.poller.fetcher.fetch

    calls = 0

    def flaky(
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        options: FetchOptions = NO_OPTIONS,
        origin: str | None = None,
    ) -> Fetched:
        nonlocal calls
        if calls == 1:
            raise RuntimeError("a bug")
        calls += 1
        return real(url, etag=etag, last_modified=last_modified, options=options, origin=origin)

    h.poller.fetcher.fetch = flaky  # type: ignore[method-assign]  # fault injection: a bug
    h.poller.config.settings.schedule.__dict__["concurrency"] = 1  # one after the other
    outcomes = {o.source: o for o in h.poll()}
    assert outcomes["good"].ok
    assert outcomes["bad"].error == "internal error: RuntimeError: a bug"
    assert (h.store.source_state("bad") or {})["status"] == "erroring"
    assert h.store.polls("bad")[0]["error"] == "internal error: RuntimeError: a bug"


@pytest.mark.parametrize(
    ("code", "ours"),
    [
        (errno.ENOSPC, True),
        (errno.EROFS, True),
        (errno.EDQUOT, True),
        (errno.EIO, True),
        (errno.EACCES, True),  # the posts folder's owner or mode changed under us
        (errno.EPERM, True),
        (errno.EMFILE, True),  # out of file descriptors: no source's doing
        (errno.ENFILE, True),
        (errno.ENAMETOOLONG, False),  # about the one file, not the folder
        (errno.EEXIST, False),
    ],
)
def test_which_write_errors_are_the_services(code: int, ours: bool) -> None:
    assert is_local_os_fault(OSError(code, os.strerror(code))) is ours


OPEN_IN_ROUNDS = """
import sys, time
from pathlib import Path
from aggregator.store import Store
folder, me, databases = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for n, database in enumerate(databases):
    (folder / f"ready-{n}-{me}").touch()
    while not (folder / f"go-{n}").exists():
        time.sleep(0.001)
    Store(database, str(folder / f"posts-{n}")).close()
    (folder / f"done-{n}-{me}").touch()
"""


@contextlib.contextmanager
def new_databases(dialect: str, database: str, folder: Path, count: int) -> Iterator[list[str]]:
    """``count`` indexes never opened: SQLite files not made yet, or PostgreSQL schemas
    with no table yet (the test's own has tables once any test used it), dropped after."""
    if dialect == "sqlite":
        yield [str(folder / f"db-{n}" / "index.sqlite") for n in range(count)]
        return
    names = [f"new_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    engine = sa.create_engine(database, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        url = sa.make_url(database)
        yield [
            url.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
                hide_password=False
            )
            for name in names
        ]
    finally:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def test_processes_opening_a_new_database_together_all_succeed(
    tmp_path: Path, dialect: str, database: str
) -> None:
    # Four processes (a poller, web replicas, a CLI command) starting on one new index:
    # on SQLite they race to make the file, on PostgreSQL to make the tables.
    rounds, count = 6, 4
    with new_databases(dialect, database, tmp_path, rounds) as databases:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_IN_ROUNDS, str(tmp_path), str(me), *databases],
                stderr=subprocess.PIPE,
            )
            for me in range(count)
        ]

        def all_at(stage: str, n: int) -> bool:
            done = len(list(tmp_path.glob(f"{stage}-{n}-*"))) == count
            return done or any(p.poll() for p in processes)  # or one of them failed

        try:
            for n in range(rounds):
                wait_for(lambda: all_at("ready", n), "all ready")  # noqa: B023 (called at once)
                (tmp_path / f"go-{n}").touch()
                wait_for(lambda: all_at("done", n), "all opened")  # noqa: B023
                if any(p.poll() for p in processes):
                    break
        except BaseException:
            for process in processes:  # they would wait for their next round for ever
                process.kill()
            raise
        finally:
            errors = [p.communicate(timeout=60)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0] * count, errors
