"""Per-source fetch options: headers, basic auth, User-Agent and proxy, against real local
servers (an origin, a second host, an HTTP proxy and a SOCKS5 proxy written here), and
their secrets kept off every page, log line, stored error and the index."""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import select
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import FIXED_NOW, HarnessFactory, MakeConfig, rss, start_aggregator, stored_bytes
from conftest import item as feed_item
from pytest_httpserver import HTTPServer
from test_dashboard import SECRET, Dash
from werkzeug import Request, Response

from aggregator.cli import cli
from aggregator.config import FETCH_OPTIONS, SourceConfig, load_config, parse_config
from aggregator.errors import ConfigError, FetchError
from aggregator.poll.fetch import Fetcher, FetchOptions, same_origin
from aggregator.poll.pipeline import Poller

pytestmark = pytest.mark.both_dialects

FEED = rss(feed_item("a1", "Behind the login"))
USER = "reader-bob"
PASSWORD = "pw-Zq8vN3xK"
COOKIE = "sid=ck-7Hh2Lw9p"
API_KEY = "key-Rt5Yu8Io"
AGENT = "MyReader/2.0 (agent-Vb6Nm)"
PROXY_USER = "proxy-user-Qa1"
PROXY_PASSWORD = "proxy-pw-Ws2Ed3"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def guarded(check: Callable[[Request], bool], body: str = FEED) -> Callable[[Request], Response]:
    """A handler that answers the feed when ``check`` passes, else 401."""

    def handle(request: Request) -> Response:
        if not check(request):
            return Response("login required", status=401)
        return Response(body, content_type="application/rss+xml", headers={"ETag": '"v1"'})

    return handle


# -- a tiny HTTP proxy and a tiny SOCKS5 proxy on 127.0.0.1 ---------------------------


class HttpProxy(socketserver.ThreadingTCPServer):
    """A forwarding HTTP proxy for http:// URLs that records what it was asked."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.login = login
        self.seen: list[tuple[str, dict[str, str]]] = []  # (request target, headers)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: HttpProxy
    protocol_version = "HTTP/1.1"  # keeps the connection, as proxies do

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.path, headers))
        login = self.server.login
        if login is not None and headers.get("proxy-authorization") != basic(*login):
            self.send_response(407)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = http.client.HTTPConnection(self.path.split("/")[2], timeout=10)
        path = "/" + self.path.split("/", 3)[3]
        forwarded = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        target.request("GET", path, headers=forwarded)
        answer = target.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        target.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SocksProxy(socketserver.ThreadingTCPServer):
    """A SOCKS5 proxy (RFC 1928, CONNECT only; RFC 1929 login) that records its clients'
    logins and targets."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []
        self.targets: list[tuple[str, int]] = []
        super().__init__(("127.0.0.1", 0), _SocksHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _SocksHandler(socketserver.StreamRequestHandler):
    server: SocksProxy

    def read(self, size: int) -> bytes:
        data = self.rfile.read(size)
        assert len(data) == size
        return data

    def handle(self) -> None:
        _version, count = self.read(2)
        methods = self.read(count)
        if 2 in methods:  # user name and password
            self.wfile.write(b"\x05\x02")
            _sub, size = self.read(2)
            user = self.read(size).decode()
            (size,) = self.read(1)
            password = self.read(size).decode()
            self.server.logins.append((user, password))
            self.wfile.write(b"\x01\x00")
        else:
            self.wfile.write(b"\x05\x00")
        _version, _command, _reserved, kind = self.read(4)
        if kind == 1:
            host = socket.inet_ntoa(self.read(4))
        elif kind == 3:
            (size,) = self.read(1)
            host = self.read(size).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, self.read(16))
        (port,) = struct.unpack("!H", self.read(2))
        self.server.targets.append((host, port))
        upstream = socket.create_connection((host, port), timeout=10)
        self.wfile.write(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
        self.wfile.flush()
        ends = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(ends, [], [], 10)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()


@pytest.fixture
def http_proxy() -> Iterator[Callable[..., HttpProxy]]:
    made: list[HttpProxy] = []

    def make(login: tuple[str, str] | None = None) -> HttpProxy:
        made.append(HttpProxy(login))
        return made[-1]

    yield make
    for proxy in made:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def socks_proxy() -> Iterator[SocksProxy]:
    proxy = SocksProxy()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    made = Fetcher(timeout=5)
    yield made
    made.close()


def requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


# -- basic auth, cookie, User-Agent ----------------------------------------------------


def test_basic_auth_from_the_environment(
    httpserver: HTTPServer,
    fetcher: Fetcher,
    make_config: MakeConfig,
    harness: HarnessFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    httpserver.expect_request("/private.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Authorization") == basic(USER, PASSWORD))
    )
    url = httpserver.url_for("/private.xml")
    with pytest.raises(FetchError) as refused:
        fetcher.fetch(url)  # no login: the server says 401
    assert refused.value.status == 401
    monkeypatch.setenv("FEED_PASSWORD", PASSWORD)
    h = harness(
        make_config(
            [
                {
                    "url": url,
                    "categories": ["Private"],
                    "username": USER,
                    "password": "${FEED_PASSWORD}",
                }
            ]
        )
    )
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 1, outcome.error
    [article] = h.files()
    assert "Behind the login" in article.read_text(encoding="utf-8")


def test_a_cookie_header_and_a_user_agent_reach_the_server(
    httpserver: HTTPServer, fetcher: Fetcher, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    httpserver.expect_request("/members.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Cookie") == COOKIE)
    )
    httpserver.expect_request("/open.xml").respond_with_data(FEED)
    h = harness(
        make_config(
            [
                {
                    "url": httpserver.url_for("/members.xml"),
                    "categories": ["Members"],
                    "headers": {"Cookie": COOKIE, "X-Api-Key": API_KEY},
                    "user_agent": AGENT,
                },
                {"url": httpserver.url_for("/open.xml"), "categories": ["Open"]},
            ],
            fetch={"user_agent": "Global/1.0"},
        )
    )
    outcomes = {o.source: o for o in h.poll()}
    assert outcomes["Members"].ok and outcomes["Members"].new == 1
    [members] = requests_to(httpserver, "/members.xml")
    assert members.headers["User-Agent"] == AGENT
    assert members.headers["X-Api-Key"] == API_KEY
    # Another source keeps the global User-Agent and gets none of the first one's headers.
    [other] = requests_to(httpserver, "/open.xml")
    assert other.headers["User-Agent"] == "Global/1.0"
    assert "Cookie" not in other.headers and "X-Api-Key" not in other.headers
    with pytest.raises(FetchError) as refused:
        fetcher.fetch(httpserver.url_for("/members.xml"))
    assert refused.value.status == 401


# -- redirects -------------------------------------------------------------------------


def test_credentials_go_to_the_same_host_only(
    httpserver: HTTPServer, threaded_httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    other = threaded_httpserver  # another host: 127.0.0.1, where the first is "localhost"
    other.expect_request("/landing.xml").respond_with_data(FEED)
    assert httpserver.url_for("/").startswith("http://localhost:")
    elsewhere = f"http://127.0.0.1:{other.port}/landing.xml"
    httpserver.expect_request("/moved.xml").respond_with_data(
        "", status=302, headers={"Location": elsewhere}
    )
    httpserver.expect_request("/old.xml").respond_with_data(
        "", status=301, headers={"Location": "/new.xml"}
    )
    httpserver.expect_request("/new.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Authorization") == basic(USER, PASSWORD))
    )
    options = FetchOptions(
        headers=(("Cookie", COOKIE), ("X-Api-Key", API_KEY)),
        username=USER,
        password=PASSWORD,
        user_agent=AGENT,
    )
    # Same host: the login and headers follow the redirect.
    same = fetcher.fetch(httpserver.url_for("/old.xml"), options=options)
    assert same.body == FEED.encode() and same.url.endswith("/new.xml")
    [new] = requests_to(httpserver, "/new.xml")
    assert new.headers["Cookie"] == COOKIE
    # Another host: it gets the feed request, and none of the credentials.
    moved = fetcher.fetch(httpserver.url_for("/moved.xml"), options=options)
    assert moved.body == FEED.encode()
    [first] = requests_to(httpserver, "/moved.xml")
    assert first.headers["Authorization"] == basic(USER, PASSWORD)
    [landed] = requests_to(other, "/landing.xml")
    for name in ("Authorization", "Cookie", "X-Api-Key"):
        assert name not in landed.headers, name
    assert landed.headers["User-Agent"] == AGENT  # not a credential: it is who we are


def test_a_permanent_redirect_that_echoes_a_credential_is_reported_masked(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/old.xml").respond_with_handler(
        lambda r: Response("", status=301, headers={"Location": f"/by/{r.headers['X-Api-Key']}"})
    )
    httpserver.expect_request(f"/by/{API_KEY}").respond_with_data(FEED)
    fetched = fetcher.fetch(
        httpserver.url_for("/old.xml"), options=FetchOptions(headers=(("X-Api-Key", API_KEY),))
    )
    assert fetched.body == FEED.encode()
    assert fetched.moved_to == httpserver.url_for("/by/***")  # the dashboard's suggestion


@pytest.mark.parametrize(
    ("configured", "target", "trusted"),
    [
        ("https://h.example/feed", "https://h.example/other", True),
        ("https://h.example/feed", "https://H.EXAMPLE:443/other", True),
        ("http://h.example/feed", "https://h.example/feed", True),  # upgrade to TLS
        ("https://h.example/feed", "http://h.example/feed", False),  # down to clear text
        ("https://h.example/feed", "https://cdn.h.example/feed", False),
        ("https://h.example/feed", "https://h.example:8443/feed", False),
        ("http://h.example:8080/feed", "https://h.example/feed", False),
        ("https://h.example/feed", "https://evil.example/h.example", False),
    ],
)
def test_which_redirects_keep_the_credentials(configured: str, target: str, trusted: bool) -> None:
    assert same_origin(configured, target) is trusted


# -- proxies ---------------------------------------------------------------------------


def test_a_proxy_for_one_source_only(
    httpserver: HTTPServer,
    make_config: MakeConfig,
    harness: HarnessFactory,
    http_proxy: Callable[..., HttpProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = http_proxy(login=(PROXY_USER, PROXY_PASSWORD))
    httpserver.expect_request("/via-proxy.xml").respond_with_data(FEED)
    httpserver.expect_request("/direct.xml").respond_with_data(FEED)
    proxy_url = proxy.url.replace("//", f"//{PROXY_USER}:{PROXY_PASSWORD}@", 1)
    h = harness(
        make_config(
            [
                {
                    "url": httpserver.url_for("/via-proxy.xml"),
                    "categories": ["Proxied"],
                    "proxy": proxy_url,
                },
                {"url": httpserver.url_for("/direct.xml"), "categories": ["Direct"]},
            ]
        )
    )
    caplog.set_level(logging.DEBUG)
    outcomes = {o.source: o for o in h.poll()}
    assert outcomes["Proxied"].ok and outcomes["Direct"].ok, outcomes
    assert [target for target, _ in proxy.seen] == [httpserver.url_for("/via-proxy.xml")]
    [(_, headers)] = proxy.seen
    assert headers["proxy-authorization"] == basic(PROXY_USER, PROXY_PASSWORD)
    # The proxy's login is the proxy's: the feed's host never sees it.
    [origin] = requests_to(httpserver, "/via-proxy.xml")
    assert "Proxy-Authorization" not in origin.headers
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PROXY_PASSWORD not in logged and PROXY_USER not in logged


def test_a_wrong_proxy_login_is_a_failure_without_the_login(
    httpserver: HTTPServer, fetcher: Fetcher, http_proxy: Callable[..., HttpProxy]
) -> None:
    proxy = http_proxy(login=(PROXY_USER, "the-right-one"))
    httpserver.expect_request("/feed.xml").respond_with_data(FEED)
    options = FetchOptions(proxy=proxy.url.replace("//", f"//{PROXY_USER}:{PROXY_PASSWORD}@"))
    with pytest.raises(FetchError) as failed:
        fetcher.fetch(httpserver.url_for("/feed.xml"), options=options)
    assert str(failed.value).endswith(": HTTP 407 Proxy Authentication Required")
    assert PROXY_PASSWORD not in str(failed.value) and PROXY_USER not in str(failed.value)


def test_an_unreachable_proxy_is_named_without_its_address_or_login(fetcher: Fetcher) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    options = FetchOptions(proxy=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}")
    with pytest.raises(FetchError) as failed:
        fetcher.fetch("http://feeds.example/feed.xml", options=options)
    text = str(failed.value)
    assert text.startswith("http://feeds.example/feed.xml: cannot fetch: ")
    assert "Unable to connect to proxy" in text
    for secret in ("127.0.0.1", PROXY_USER, PROXY_PASSWORD):
        assert secret not in text


def test_a_socks5_proxy_with_a_login(
    httpserver: HTTPServer, fetcher: Fetcher, socks_proxy: SocksProxy
) -> None:
    httpserver.expect_request("/socks.xml").respond_with_data(FEED)
    options = FetchOptions(
        proxy=f"socks5h://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{socks_proxy.port}"
    )
    fetched = fetcher.fetch(httpserver.url_for("/socks.xml"), options=options)
    assert fetched.body == FEED.encode()
    assert socks_proxy.logins == [(PROXY_USER, PROXY_PASSWORD)]
    assert socks_proxy.targets == [("localhost", httpserver.port)]  # socks5h: it resolves


# -- ${VAR} and check-config -----------------------------------------------------------


def source_yaml(options: str, url: str = "https://example.com/feed") -> str:
    return f"sources:\n  - url: {url}\n    categories: [A]\n{options}"


def test_variables_are_expanded_and_dollar_dollar_escapes() -> None:
    text = source_yaml(
        "    username: ${FEED_USER}\n"
        "    password: p$ss-${FEED_PASSWORD}\n"
        '    headers: {Cookie: "a=$${NOT_EXPANDED}; b=${FEED_COOKIE}"}\n'
        "    user_agent: ${AGENT}\n"
        "    proxy: http://${PROXY_HOST}:3128\n"
    )
    environ = {
        "FEED_USER": USER,
        "FEED_PASSWORD": PASSWORD,
        "FEED_COOKIE": "c1",
        "AGENT": AGENT,
        "PROXY_HOST": "proxy.lan",
    }
    [source] = parse_config(text, environ=environ).sources
    assert source.username is not None and source.username.get_secret_value() == USER
    assert source.password is not None and source.password.get_secret_value() == f"p$ss-{PASSWORD}"
    assert dict(source.headers)["Cookie"].get_secret_value() == "a=${NOT_EXPANDED}; b=c1"
    assert source.user_agent == AGENT
    assert source.proxy is not None and source.proxy.get_secret_value() == "http://proxy.lan:3128"
    # Nowhere else: a title or a rule may hold "${" as text.
    titled = "sources:\n  - url: https://example.com/${X}\n    categories: ['${Y}']\n"
    [plain] = parse_config(titled, environ={}).sources
    assert plain.url.endswith("/${X}") and plain.categories == ("${Y}",)


def test_a_missing_variable_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        source_yaml(
            "    username: bob\n"
            "    password: ${NO_SUCH_PASSWORD}\n"
            "    headers:\n"
            "      Authorization2: Bearer ${NO_SUCH_TOKEN}\n"
            "      X-Odd: ${not closed\n"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert error.value.problems == [
        f"{path}:5: sources[0].password: environment variable NO_SUCH_PASSWORD is not set",
        f"{path}:7: sources[0].headers.Authorization2: environment variable NO_SUCH_TOKEN "
        "is not set",
        f"{path}:8: sources[0].headers.X-Odd: `${{` must be followed by a variable name and "
        "`}` (`$${` is a literal `${`)",
    ]
    result = CliRunner().invoke(cli, ["check-config", "--config", str(path)])
    assert result.exit_code != 0
    assert "environment variable NO_SUCH_PASSWORD is not set" in result.output


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("    headers: {Host: other.example}\n", "header Host cannot be set here"),
        ("    headers: {Content-Length: '0'}\n", "header Content-Length cannot be set here"),
        ("    headers: {user-agent: x}\n", "use `user_agent:`"),
        ("    headers: {If-None-Match: x}\n", "the conditional GET sets it"),
        ("    headers: {Proxy-Authorization: x}\n", "give the proxy's login in `proxy:`"),
        ("    headers: {'Bad Name': x}\n", "'Bad Name' is not a valid header name"),
        ("    headers: {X-A: '1', x-a: '2'}\n", "header x-a is given twice"),
        ('    headers: {X-A: "v\\r\\nInjected: 1"}\n', "header X-A's value has a control"),
        ("    headers: [Cookie]\n", "headers must be a mapping"),
        ("    password: secret-only\n", "`password:` needs a `username:`"),
        ("    username: 'a:b'\n", "username cannot contain ':'"),
        (
            "    username: a\n    headers: {Authorization: Bearer x}\n",
            "either `username:`/`password:` or an Authorization header",
        ),
        ("    proxy: ftp://proxy.lan\n", "proxy must be a URL with a host"),
        ("    proxy: proxy.lan:3128\n", "proxy must be a URL with a host"),
        ("    proxy: 'http://proxy.lan:99999'\n", "proxy is not a URL"),
    ],
)
def test_check_config_refuses_bad_fetch_options(options: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(source_yaml(options), environ={})
    [reported] = error.value.problems
    assert reported.startswith("config.yaml:") and problem in reported, reported
    for secret in ("secret-only", "Injected", "other.example"):
        assert secret not in reported  # a problem names the option, never its value


def test_fetch_options_on_a_local_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        parse_config(
            source_yaml("    user_agent: x\n    proxy: http://p.lan\n", url="feed.xml"),
            base_dir=tmp_path,
            environ={},
        )
    assert "user_agent, proxy: only for http(s) sources" in error.value.report()


# -- the fingerprint -------------------------------------------------------------------


def one_source(**options: Any) -> SourceConfig:
    data = {"url": "https://example.com/feed", "categories": ["A"], **options}
    [source] = parse_config(yaml.safe_dump({"sources": [data]}), environ={}).sources
    return source


def test_the_fingerprint_covers_the_options_and_holds_no_plain_secret() -> None:
    plain = one_source()
    # Unchanged for a source without options: an upgrade does not reset every source.
    before = hashlib.sha1(plain.model_dump_json(exclude=set(FETCH_OPTIONS)).encode())
    assert plain.fingerprint() == before.hexdigest()[:16]
    fingerprints = {
        plain.fingerprint(),
        one_source(username="u", password="short").fingerprint(),
        one_source(username="u", password="shorT").fingerprint(),
        one_source(headers={"Cookie": "a=1"}).fingerprint(),
        one_source(headers={"Cookie": "a=2"}).fingerprint(),
        one_source(user_agent="x").fingerprint(),
        one_source(proxy="http://p.lan:3128").fingerprint(),
        one_source(proxy="http://p.lan:3129").fingerprint(),
    }
    assert len(fingerprints) == 8  # each change is a change
    # A guess at the password hashed the cheap way does not give the stored value.
    source = one_source(username="u", password="short")
    dumped = source.model_dump_json()
    assert "short" not in dumped and "**" in dumped  # SecretStr: masked in any dump
    assert "short" not in repr(source)


def test_a_new_password_retries_a_paused_source_without_old_validators(
    httpserver: HTTPServer, make_config: MakeConfig, harness: HarnessFactory
) -> None:
    httpserver.expect_request("/feed.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Authorization") == basic(USER, PASSWORD))
    )
    source = {"url": httpserver.url_for("/feed.xml"), "categories": ["A"], "username": USER}
    path = make_config([{**source, "password": "wrong"}], schedule={"max_failures": 1})
    h = harness(path)
    [failed] = h.poll()
    assert failed.error and "401" in failed.error
    assert (h.store.source_state("A") or {})["status"] == "paused"
    [skipped] = h.poll()
    assert skipped.skipped  # paused: it waits for a change
    make_config([{**source, "password": PASSWORD}], schedule={"max_failures": 1})
    h.config = load_config(path)
    h.poller.close()
    h.poller = Poller(h.config, h.store, clock=lambda: FIXED_NOW, workers=1)
    [retried] = h.poll()
    assert retried.ok and retried.new == 1, retried
    assert (h.store.source_state("A") or {})["status"] == "ok"
    # The validators were saved with this password: the next poll is conditional...
    h.poll()
    assert requests_to(httpserver, "/feed.xml")[-1].headers.get("If-None-Match") == '"v1"'
    # ...and a changed header makes it unconditional again.
    make_config(
        [{**source, "password": PASSWORD, "headers": {"X-Extra": "1"}}],
        schedule={"max_failures": 1},
    )
    h.config = load_config(path)
    h.poller.close()
    h.poller = Poller(h.config, h.store, clock=lambda: FIXED_NOW, workers=1)
    h.poll()
    assert "If-None-Match" not in requests_to(httpserver, "/feed.xml")[-1].headers


# -- never shown -----------------------------------------------------------------------


def test_fetch_secrets_never_reach_pages_opml_logs_errors_or_the_index(
    httpserver: HTTPServer,
    make_config: MakeConfig,
    http_proxy: Callable[..., HttpProxy],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = http_proxy(login=(PROXY_USER, PROXY_PASSWORD))
    monkeypatch.setenv("FEED_PASSWORD", PASSWORD)
    httpserver.expect_request("/ok.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Authorization") == basic(USER, PASSWORD))
    )
    # A server that echoes the credential it got into a (refused) redirect: the error
    # text quotes the target, so the fetcher masks it.
    httpserver.expect_request("/echo.xml").respond_with_handler(
        lambda r: Response("", status=302, headers={"Location": f"ftp://x/{r.headers['Cookie']}"})
    )
    httpserver.expect_request("/denied.xml").respond_with_data("no", status=403)
    secrets = (USER, PASSWORD, COOKIE, API_KEY, AGENT, PROXY_USER, PROXY_PASSWORD)
    config = make_config(
        [
            {
                "url": httpserver.url_for("/ok.xml"),
                "categories": ["Private", "Ok"],
                "username": USER,
                "password": "${FEED_PASSWORD}",
                "user_agent": AGENT,
                "proxy": proxy.url.replace("//", f"//{PROXY_USER}:{PROXY_PASSWORD}@"),
            },
            {
                "url": httpserver.url_for("/echo.xml"),
                "categories": ["Private", "Echo"],
                "headers": {"Cookie": COOKIE, "X-Api-Key": API_KEY},
            },
            {
                "url": httpserver.url_for("/denied.xml"),
                "categories": ["Private", "Denied"],
                "headers": {"Authorization": f"Bearer {API_KEY}"},
            },
        ],
        server={"admin_secret": SECRET},
    )
    dash = Dash(config)
    try:
        assert (dash.store.source_state("Ok") or {})["status"] == "ok"
        echo = dash.store.source_state("Echo") or {}
        assert echo["last_error"] and "redirect to a non-http URL refused" in echo["last_error"]
        assert "ftp://x/***" in echo["last_error"]
        stored = [
            str(value)
            for name in ("Ok", "Echo", "Denied")
            for rows in ([dash.store.source_state(name) or {}], dash.store.polls(name))
            for row in rows
            for value in row.values()
        ]
        paths = [
            "/",
            "/sources/Ok",
            "/sources/Echo",
            "/sources/Denied",
            "/healthz",
            "/opml",
            "/feeds/all.rss",
            "/feeds/Private.atom",
            "/feeds/all.json",
            "/metrics",
        ]
        pages = {
            f"{path} (anonymous)": dash.client.get(path).get_data(as_text=True) for path in paths
        }
        dash.login()
        pages |= {f"{path} (admin)": dash.client.get(path).get_data(as_text=True) for path in paths}
        assert "Private" in pages["/opml (admin)"] and "Behind the login" in pages["/ (admin)"]
        # The admin sees which options a source has, not their values.
        shown = "Fetched with: headers Cookie, X-Api-Key (values in the config only)"
        assert shown in pages["/sources/Echo (admin)"]
        assert "basic auth · own User-Agent · http proxy" in pages["/sources/Ok (admin)"]
        assert "Fetched with" not in pages["/sources/Echo (anonymous)"]
        exported = CliRunner().invoke(cli, ["export-opml", "--config", str(config)])
        assert exported.exit_code == 0 and "ok.xml" in exported.output
        dry = CliRunner().invoke(cli, ["test-rules", "--config", str(config), "--fetch", "--all"])
        # The dry run fetches with the options too: through the proxy, with the login.
        assert "KEEP   Ok: Behind the login  [fetched]" in dry.output, dry.output
        assert "Echo: (cannot fetch: " in dry.output and "ftp://x/***" in dry.output
        listing = CliRunner().invoke(cli, ["sources", "--config", str(config), "--json"])
        assert listing.exit_code == 0 and "/echo.xml" in listing.output, listing.output
        ours = [r for r in caplog.records if not r.name.startswith("werkzeug")]
        database = stored_bytes(dash.store)
        seen = {
            **pages,
            "stored rows": "\n".join(stored),
            "logs": "\n".join(r.getMessage() for r in ours),
            "export-opml": exported.output,
            "dry run": dry.output,
            "aggregator sources": listing.output,
            "the index": database.decode("latin-1"),
        }
        for where, text in seen.items():
            for secret in secrets:
                assert secret not in text, f"{secret!r} in {where}"
    finally:
        dash.close()


def test_the_poll_command_logs_no_secret(
    httpserver: HTTPServer, make_config: MakeConfig, tmp_path: Path
) -> None:
    httpserver.expect_request("/ok.xml").respond_with_handler(
        guarded(lambda r: r.headers.get("Authorization") == basic(USER, PASSWORD))
    )
    httpserver.expect_request("/echo.xml").respond_with_handler(
        lambda r: Response("", status=302, headers={"Location": f"ftp://x/{r.headers['Cookie']}"})
    )
    config = make_config(
        [
            {
                "url": httpserver.url_for("/ok.xml"),
                "categories": ["Ok"],
                "username": "${FEED_USER}",
                "password": "${FEED_PASSWORD}",
                "user_agent": AGENT,
            },
            {
                "url": httpserver.url_for("/echo.xml"),
                "categories": ["Echo"],
                "headers": {"Cookie": "${FEED_COOKIE}"},
            },
        ]
    )
    log = tmp_path / "poll.log"
    process = start_aggregator(
        ["-v", "poll", "--config", str(config), "--workers", "1"],
        tmp_path,
        log,
        env={"FEED_USER": USER, "FEED_PASSWORD": PASSWORD, "FEED_COOKIE": COOKIE},
    )
    assert process.wait(timeout=120) == 1  # one source failed
    text = log.read_text(encoding="utf-8")
    assert "poll source=Ok status=ok" in text, text
    assert "poll source=Echo status=erroring" in text and "ftp://x/***" in text, text
    for secret in (USER, PASSWORD, COOKIE, AGENT):
        assert secret not in text, secret


def test_full_text_pages_get_the_cookie_on_the_feeds_host_only(
    httpserver: HTTPServer,
    threaded_httpserver: HTTPServer,
    make_config: MakeConfig,
    harness: HarnessFactory,
) -> None:
    article = (Path(__file__).parent / "data" / "fulltext" / "article.html").read_text()
    other = threaded_httpserver  # 127.0.0.1: another host than "localhost"
    other.expect_request("/elsewhere").respond_with_data(article, content_type="text/html")
    here = httpserver.url_for("/story")
    there = f"http://127.0.0.1:{other.port}/elsewhere"
    items = feed_item("s1", "Story here", "<p>Teaser.</p>", link=here) + feed_item(
        "s2", "Story there", "<p>Teaser.</p>", link=there
    )

    def member(request: Request) -> bool:
        return request.headers.get("Cookie") == COOKIE

    httpserver.expect_request("/feed.xml").respond_with_handler(guarded(member, rss(items)))
    httpserver.expect_request("/story").respond_with_handler(
        lambda r: (
            Response(article, content_type="text/html")
            if member(r)
            else Response("<html><body>Please log in</body></html>", status=401)
        )
    )
    h = harness(
        make_config(
            [
                {
                    "url": httpserver.url_for("/feed.xml"),
                    "categories": ["news", "members"],
                    "full_text": True,
                    "headers": {"Cookie": COOKIE},
                    "user_agent": AGENT,
                }
            ]
        )
    )
    [outcome] = h.poll()
    assert outcome.ok and outcome.new == 2, outcome
    texts = {p.name: p.read_text(encoding="utf-8") for p in h.files()}
    # The page behind the login was fetched with the cookie: its full text is the body.
    assert sum("one hundred and twelve steps" in t for t in texts.values()) == 2, texts.keys()
    [page] = requests_to(httpserver, "/story")
    assert page.headers["Cookie"] == COOKIE
    # The page on another host got the source's User-Agent, not its cookie.
    [elsewhere] = requests_to(other, "/elsewhere")
    assert "Cookie" not in elsewhere.headers
    assert elsewhere.headers["User-Agent"] == AGENT
