"""Secrets and the admin: credentials in feed URLs stay the owner's, sessions cannot be
guessed or kept after logout, logins are throttled, no machine paths on pages, and local
files are read only under their roots."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import EXAMPLES, HarnessFactory, MakeConfig, ManualClock
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import BadSignature
from pytest_httpserver import HTTPServer
from test_dashboard import SECRET, Dash

from aggregator.config import load_config
from aggregator.errors import FetchError
from aggregator.poll.fetch import Fetcher, check_opened
from aggregator.redact import redact
from aggregator.store import Store
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

# -- credentials and tokens in source URLs ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://example.com/feed.xml", "https://example.com/feed.xml"),
        ("https://user:pass@host/feed", "https://***@host/feed"),
        ("https://user@host:8443/feed", "https://***@host:8443/feed"),
        ("https://u:p@ss@host/", "https://***@host/"),  # an unescaped "@" in the password
        ("https://host/feed?token=abc", "https://host/feed?token=***"),
        ("https://h/f?a=1&key=s3cret&empty=", "https://h/f?a=***&key=***&empty="),
        ("https://h/cb#access_token=xyz&scope=r", "https://h/cb#access_token=***&scope=***"),
        ("https://h/f?BARETOKEN123", "https://h/f?***"),  # the key as the whole query
        ("https://h/f?a=1&BARE", "https://h/f?a=***&***"),
        ("/new?BARETOKEN: HTTP 301", "/new?***: HTTP 301"),
        ("did you mean 'https://h/f'?", "did you mean 'https://h/f'?"),
        ("Q & A", "Q & A"),
        (
            "https://a:b@h/f?t=1: HTTP 500 INTERNAL SERVER ERROR",
            "https://***@h/f?t=***: HTTP 500 INTERNAL SERVER ERROR",
        ),
        (  # urllib3 quotes the request path, not the whole URL
            "Max retries exceeded with url: /feed?token=abc (Caused by NewConnectionError)",
            "Max retries exceeded with url: /feed?token=*** (Caused by NewConnectionError)",
        ),
        ("'/feed?token=abc'", "'/feed?token=***'"),
        ("https://h/f?t=a:b&u=c: refused", "https://h/f?t=***&u=***: refused"),
        ("/srv/feeds/local.xml", "/srv/feeds/local.xml"),
        ("file:///srv/feeds/local.xml", "file:///srv/feeds/local.xml"),
        ("no URL here: HTTP 404", "no URL here: HTTP 404"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent: stored texts may be redacted again


PASSWORD = "hunter2-password"
TOKEN = "tok3n-value-42"
USER = "alice-user"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_secrets_in_source_urls_are_shown_only_to_the_admin(
    httpserver: HTTPServer, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs each request line, query included
    httpserver.expect_request("/feed").respond_with_data("broken", status=500)
    failing = httpserver.url_for(f"/feed?token={TOKEN}&page=2")
    failing = failing.replace("http://", f"http://{USER}:{PASSWORD}@", 1)
    refused = f"http://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}/feed?token={TOKEN}"
    config = make_config(
        [
            {"url": failing, "categories": ["Private", "Failing"], "name": "failing"},
            {"url": refused, "categories": ["Private", "Refused"], "name": "refused"},
            {"url": str(EXAMPLES / "example-blog.atom.xml"), "categories": ["Tech"]},
        ],
        server={"admin_secret": SECRET},
    )
    dash = Dash(config)
    try:
        stored = []
        for name in ("failing", "refused"):
            state = dash.store.source_state(name)
            assert state is not None and state["last_error"], name
            stored += [state["last_error"], state["reason"] or ""]
            stored += [p["error"] for p in dash.store.polls(name)]
        assert "***" in stored[0]
        pages = {
            path: dash.client.get(path).get_data(as_text=True)
            for path in (
                "/",
                "/sources/failing",
                "/sources/refused",
                "/healthz",
                "/opml",
                "/feeds/all.rss",
                "/feeds/all.atom",
                "/feeds/all.json",
            )
        }
        assert "failing" in pages["/healthz"] and "refused" in pages["/healthz"]
        assert "/feed?token=***" in pages["/sources/failing"]
        # The test server's own access log is the feed host's, not ours.
        ours = [r for r in caplog.records if not r.name.startswith("werkzeug")]
        logged = "\n".join(r.getMessage() for r in ours)
        assert "GET /feed?token=***" in logged  # urllib3's request line, redacted
        seen = {**pages, "stored errors": "\n".join(stored), "logs": logged}
        for where, text in seen.items():
            for secret in (PASSWORD, TOKEN, USER):
                assert secret not in text, f"{secret} in {where}"
        dash.login()
        admin_page = dash.client.get("/sources/failing").get_data(as_text=True)
        assert failing.replace("&", "&amp;") in admin_page
    finally:
        dash.close()


def test_a_login_in_the_source_url_never_reaches_articles_or_feeds(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    # Relative links resolve against the URL fetched: its login must not come along.
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Private</title>'
        "<item><title>Relative</title><link>/posts/1</link><guid>r1</guid>"
        '<description><![CDATA[<p><a href="/posts/2">next</a><img src="img/a.png"></p>]]>'
        "</description></item></channel></rss>"
    )
    httpserver.expect_request("/feeds/private.rss").respond_with_data(body)
    url = httpserver.url_for("/feeds/private.rss").replace(
        "http://", f"http://{USER}:{PASSWORD}@", 1
    )
    h = harness(make_config([{"url": url, "categories": ["Private"], "name": "private"}]))
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1, outcome
    [article] = h.files()
    text = article.read_text(encoding="utf-8")
    host = httpserver.url_for("/").rstrip("/")
    assert f"link: {host}/posts/1" in text
    # (An RSS body's base is the document's URL: "img/a.png" is under /feeds/.)
    assert f"{host}/posts/2" in text and f"{host}/feeds/img/a.png" in text
    app = create_app(h.config, h.store)
    published = [
        app.test_client().get(f"/feeds/all.{kind}").get_data(as_text=True)
        for kind in ("rss", "atom", "json")
    ]
    for where in (text, *published):
        assert PASSWORD not in where and USER not in where


# -- sessions and logins -----------------------------------------------------------------


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token of the client's session, as the login form carries it."""
    match = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert match is not None
    return match.group(1)


def is_admin_with(app: Flask, cookie: str) -> bool:
    """Whether a fresh browser holding ``cookie`` is the admin (the overview's button)."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return "Rebuild all articles" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("dialect", ["sqlite"])  # a copy of the config: another database
def test_the_session_key_is_random_kept_in_the_database_not_derived_from_the_secret(
    make_config: MakeConfig, tmp_path: Path, dialect: str
) -> None:
    config = make_config([], server={"admin_secret": SECRET})
    dashes = []
    for name in ("a", "b", "a"):  # same secret; two databases; "a" again: a restart
        (tmp_path / name).mkdir(exist_ok=True)
        dashes.append(Dash(Path(shutil.copy(config, tmp_path / name / "config.yaml"))))
    first, other, restarted = dashes
    try:
        first.login()
        cookie = session_cookie(first.client)
        assert is_admin_with(first.app, cookie)
        # Another database: another key, so the cookie does not even verify there.
        interface = other.app.session_interface
        assert isinstance(interface, SecureCookieSessionInterface)
        serializer = interface.get_signing_serializer(other.app)
        assert serializer is not None  # None would mean the app has no secret key at all
        with pytest.raises(BadSignature):
            serializer.loads(cookie)
        assert not is_admin_with(other.app, cookie)
        assert other.app.secret_key != first.app.secret_key
        # The same database after a restart: the same key, the session still open.
        assert restarted.app.secret_key == first.app.secret_key
        assert is_admin_with(restarted.app, cookie)
        # Restarted with another secret: the sessions of the old one are over.
        changed = tmp_path / "a" / "config.yaml"
        changed.write_text(changed.read_text().replace(SECRET, "another secret, as long"))
        dashes.append(Dash(changed))
        assert not is_admin_with(dashes[-1].app, cookie)
    finally:
        for dash in dashes:
            dash.close()


def test_a_cookie_copied_before_logout_is_refused_after_it(
    make_config: MakeConfig,
) -> None:
    dash = Dash(make_config([], server={"admin_secret": SECRET}))
    try:
        dash.login()
        copied = session_cookie(dash.client)
        assert is_admin_with(dash.app, copied)
        assert dash.client.post("/logout", data={"csrf": dash.csrf("/")}).status_code == 302
        assert not is_admin_with(dash.app, copied)
        thief = dash.app.test_client()
        thief.set_cookie("session", copied)
        assert thief.post("/admin/rebuild", data={"csrf": csrf_of(thief)}).status_code == 403
    finally:
        dash.close()


def test_failed_logins_are_throttled_per_client_and_in_all(make_config: MakeConfig) -> None:
    config = load_config(make_config([], server={"admin_secret": SECRET}))
    store = Store(config.settings.database, config.settings.posts_dir)
    clock = ManualClock()
    app = create_app(config, store, clock=clock)

    def login(secret: str, address: str) -> int:
        client = app.test_client()
        answer = client.post(
            "/login",
            data={"secret": secret, "csrf": csrf_of(client)},
            environ_base={"REMOTE_ADDR": address},
        )
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] == "60"
        return answer.status_code

    try:
        assert [login("wrong guess, long enough", "192.0.2.1") for _ in range(5)] == [403] * 5
        assert login(SECRET, "192.0.2.1") == 429  # even the right secret: no oracle
        assert login(SECRET, "192.0.2.2") == 302  # another client is not held up
        clock.advance(60)
        assert login(SECRET, "192.0.2.1") == 302  # the window has passed
        # From many addresses at once: the global cap (30 a minute) holds everyone off.
        for n in range(30):
            assert login("wrong guess, long enough", f"198.51.100.{n // 5}") == 403
        assert login(SECRET, "203.0.113.9") == 429
        clock.advance(60)
        assert login(SECRET, "203.0.113.9") == 302
    finally:
        store.close()


# -- machine paths ---------------------------------------------------------------------


def test_article_pages_show_the_path_relative_to_posts_dir(make_config: MakeConfig) -> None:
    dash = Dash(
        make_config([{"url": str(EXAMPLES / "example-blog.atom.xml"), "categories": ["T"]}])
    )
    try:
        [entry, *_] = dash.store.entries()
        page = dash.client.get(f"/articles/{entry['uid']}").get_data(as_text=True)
        posts = str(Path(dash.config.settings.posts_dir).resolve())
        assert posts not in page
        assert f"<code>{entry['path']}</code>" in page
        assert not Path(entry["path"]).is_absolute()
    finally:
        dash.close()


# -- local files under fetch.file_roots ------------------------------------------------


def test_the_roots_are_checked_on_the_file_actually_opened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    inside = root / "feed.xml"
    inside.write_text("<rss/>", encoding="utf-8")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for feeds", encoding="utf-8")
    # A swap between a check of the path and its open cannot be timed deterministically
    # here. So the check is made on the open descriptor instead, and this shows that:
    # the path names a file inside the roots, but the file open is the outside one (as
    # after a swap just before the open), and it is refused.
    fd = os.open(outside, os.O_RDONLY)
    try:
        with pytest.raises(FetchError, match=r"outside settings\.fetch\.file_roots"):
            check_opened(fd, str(inside), [root])
    finally:
        os.close(fd)
    fd = os.open(inside, os.O_RDONLY)
    try:
        check_opened(fd, str(inside), [root])  # the same file: allowed
    finally:
        os.close(fd)
    # And end to end: a symlink inside the roots to a file outside them.
    (root / "sneaky.xml").symlink_to(outside)
    fetcher = Fetcher(file_roots=[str(root)])
    with pytest.raises(FetchError, match=r"outside settings\.fetch\.file_roots"):
        fetcher.fetch(str(root / "sneaky.xml"))
    assert fetcher.fetch(str(inside)).body == b"<rss/>"


def test_a_fifo_under_the_roots_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.xml"
    os.mkfifo(fifo)
    with pytest.raises(FetchError, match="not a regular file"):
        Fetcher(file_roots=[str(tmp_path)]).fetch(str(fifo))
