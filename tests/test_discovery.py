"""Adding sources: discovery from real pages on a local HTTP server, `aggregator add` and
`aggregator sources` run as a user runs them, and the pure page reading beside them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import DATA, EXAMPLES, MakeConfig, item, rss
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer

from aggregator.config import load_config
from aggregator.content.discover import (
    common_feed_urls,
    default_categories,
    looks_like_html,
    read_page,
)
from aggregator.poll.discovery import SourceAdder, normalise_url
from aggregator.poll.pipeline import utcnow
from aggregator.poll.scheduler import Service
from aggregator.store import Store, claims
from aggregator.web import create_app
from aggregator.web.configwatch import ConfigWatch

PAGES = DATA / "discover"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``aggregator *args`` in a subprocess, with no terminal on standard input."""
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def serve(server: HTTPServer, path: str, name: str, content_type: str) -> None:
    server.expect_request(path).respond_with_data(
        (PAGES / name).read_bytes(), content_type=content_type
    )


def serve_blog(server: HTTPServer) -> str:
    """The home page with two feed alternates (relative to its <base>) and both feeds."""
    serve(server, "/", "two-alternates.html", "text/html; charset=utf-8")
    serve(server, "/blog/atom.xml", "atom.xml", "application/atom+xml")
    serve(server, "/blog/comments/feed.json", "comments.json", "application/feed+json")
    return server.url_for("/")


COMMENTED = """\
# My aggregator. This comment must survive.
settings:
  posts_dir: posts        # where articles go
  database: db/index.sqlite

sources:
  # The first source, kept first.
  - url: {example}
    categories: [Tech, Example Blog, Engineering]
    name: example-blog   # named on purpose
"""


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    text = COMMENTED.format(example=EXAMPLES / "example-blog.atom.xml")
    text = text.replace(
        "  database: db/index.sqlite\n",
        f"  database: db/index.sqlite\n  fetch:\n    file_roots: [{EXAMPLES}]\n",
    )
    path.write_text(text, encoding="utf-8")
    return path


# -- the pure part ----------------------------------------------------------------------


def test_read_page_resolves_alternates_against_base_and_skips_non_feeds() -> None:
    page = read_page(
        (PAGES / "two-alternates.html").read_bytes(),
        "https://example.com/index.html",
        "text/html; charset=utf-8",
    )
    assert [link.url for link in page.links] == [
        "https://example.com/blog/atom.xml",
        "https://example.com/blog/comments/feed.json",
    ]
    assert [link.title for link in page.links] == ["文章", "评论"]
    assert page.site_name == "阮一峰的网络日志"
    assert page.title == "阮一峰的网络日志 – 首页"


def test_read_page_decodes_by_meta_charset_and_takes_loose_types_named_feed() -> None:
    html = (
        '<html><head><meta charset="gbk"><title>示例日报</title>'
        '<link rel="alternate" type="text/xml" title="RSS 订阅" href="/rss">'
        '<link rel="alternate" type="application/json" href="/wp-json/">'
        "</head></html>"
    ).encode("gbk")
    page = read_page(html, "http://news.example.cn/a/b.html")
    assert page.title == "示例日报"
    assert [link.url for link in page.links] == ["http://news.example.cn/rss"]


def test_common_feed_urls_try_the_pages_folder_then_the_root() -> None:
    folder, root = common_feed_urls("https://example.com/blog/post.html?x=1")
    assert folder[0] == "https://example.com/blog/feed"
    assert root[:4] == (
        "https://example.com/feed",
        "https://example.com/rss.xml",
        "https://example.com/atom.xml",
        "https://example.com/index.xml",
    )
    assert "https://example.com/feed.json" in root
    assert common_feed_urls("https://example.com/") == (root,)


@pytest.mark.parametrize(
    ("feed", "site", "expected"),
    [
        ("阮一峰的网络日志", "阮一峰的网络日志", ("阮一峰的网络日志",)),
        ("Example Blog", "Example Blog – thoughts on things", ("Example Blog",)),
        ("Example Blog » Comments", "Example Blog", ("Example Blog » Comments",)),
        ("Comments", "Example Blog", ("Example Blog", "Comments")),
        ("评论 / 回复", "", ("评论 ／ 回复",)),  # '/' would split the level
        ("  新浪\u3000财经\n要闻 ", "", ("新浪 财经 要闻",)),
        ("", "", ("example.com",)),
        ("长" * 100, "", ("长" * 80,)),
    ],
)
def test_default_categories(feed: str, site: str, expected: tuple[str, ...]) -> None:
    assert default_categories(feed, site, "https://example.com/feed") == expected


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("example.com", "https://example.com/"),
        (" http://example.com?feed=rss2 ", "http://example.com/?feed=rss2"),
        ("https://example.com/blog/", "https://example.com/blog/"),
    ],
)
def test_a_typed_url_is_made_absolute(typed: str, url: str) -> None:
    assert normalise_url(typed) == url


def test_looks_like_html() -> None:
    assert looks_like_html(b"<rss/>", "text/html")
    assert looks_like_html(b"\n<!DOCTYPE html><html>", None)
    assert not looks_like_html(b"<!doctype html>", "application/rss+xml")
    assert not looks_like_html(b'<?xml version="1.0"?><rss/>', "text/plain")


# -- aggregator add ---------------------------------------------------------------------


def test_add_lists_a_pages_two_feeds_and_adds_the_one_picked(
    httpserver: HTTPServer, commented: Path
) -> None:
    url = serve_blog(httpserver)
    before = commented.read_text(encoding="utf-8")
    result = run("add", url, "--config", str(commented), cwd=commented.parent)
    assert result.returncode == 1, result.stderr
    assert "2 feeds found: choose one with --pick N" in result.stderr
    assert "1. 阮一峰的网络日志 (1 entries): " + httpserver.url_for("/blog/atom.xml") in (
        result.stderr
    )
    assert "2. 阮一峰的网络日志 – 评论 / 回复 (2 entries)" in result.stderr
    assert commented.read_text(encoding="utf-8") == before  # nothing added without a choice

    result = run("add", url, "--pick", "2", "--config", str(commented), cwd=commented.parent)
    assert result.returncode == 0, result.stderr
    feed_url = httpserver.url_for("/blog/comments/feed.json")
    assert f"added 阮一峰的网络日志 – 评论 ／ 回复: {feed_url}" in result.stdout
    text = commented.read_text(encoding="utf-8")
    assert text.startswith(before)  # comments, order and quoting as they were
    added = yaml.safe_load(text)["sources"][-1]
    # The feed's title holds the site's name (og:site_name): one level, '/' made '／'.
    assert added == {"url": feed_url, "categories": ["阮一峰的网络日志 – 评论 ／ 回复"]}
    config = load_config(commented)
    assert [s.key for s in config.sources] == ["example-blog", "阮一峰的网络日志 – 评论 ／ 回复"]


def test_add_finds_a_feed_at_a_common_path_when_the_page_names_none(
    httpserver: HTTPServer, commented: Path
) -> None:
    serve(httpserver, "/", "no-alternates.html", "text/html")
    serve(httpserver, "/atom.xml", "atom.xml", "application/atom+xml")
    result = run(
        "add",
        httpserver.url_for("/"),
        "--categories",
        "技术 / 博客 / 阮一峰",
        "--name",
        "ruan",
        "--config",
        str(commented),
        cwd=commented.parent,
    )
    assert result.returncode == 0, result.stderr
    assert "1. 阮一峰的网络日志 (1 entries): " + httpserver.url_for("/atom.xml") in result.stderr
    [source] = [s for s in load_config(commented).sources if s.key == "ruan"]
    assert source.url == httpserver.url_for("/atom.xml")
    assert source.categories == ("技术", "博客", "阮一峰")
    asked = {request.path for request, _response in httpserver.log}
    assert {"/", "/feed", "/rss.xml", "/atom.xml"} <= asked


def test_add_a_feed_url_directly_names_it_after_the_feed(
    httpserver: HTTPServer, commented: Path
) -> None:
    httpserver.expect_request("/rss").respond_with_data(
        rss(item("1", "One"), title="Hacker News: Front Page"), content_type="application/xml"
    )
    result = run(
        "add", httpserver.url_for("/rss"), "--config", str(commented), cwd=commented.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added Hacker News: Front Page: ")
    assert "feeds of" not in result.stderr  # nothing to choose: no list
    [request] = [r for r, _ in httpserver.log]  # fetched once, to check it
    assert request.path == "/rss"
    source = load_config(commented).sources[-1]
    assert source.categories == ("Hacker News: Front Page",)


def test_a_page_with_no_feed_is_a_clear_error(httpserver: HTTPServer, commented: Path) -> None:
    serve(httpserver, "/", "no-feed.html", "text/html")
    before = commented.read_text(encoding="utf-8")
    result = run("add", httpserver.url_for("/"), "--config", str(commented), cwd=commented.parent)
    assert result.returncode == 1
    assert "no feed found at " + httpserver.url_for("/") in result.stderr
    assert 'names no feed (<link rel="alternate">)' in result.stderr
    assert "/rss.xml, /atom.xml" in result.stderr
    assert commented.read_text(encoding="utf-8") == before


def test_duplicate_url_or_name_is_refused(httpserver: HTTPServer, commented: Path) -> None:
    url = serve_blog(httpserver)
    args = ("--config", str(commented))
    assert run("add", url, "--pick", "1", *args, cwd=commented.parent).returncode == 0
    before = commented.read_text(encoding="utf-8")

    again = run("add", httpserver.url_for("/blog/atom.xml"), *args, cwd=commented.parent)
    assert again.returncode == 1
    feed_url = httpserver.url_for("/blog/atom.xml")
    assert f"{feed_url} is already in {commented} as source '阮一峰的网络日志'" in again.stderr

    named = run("add", url, "--pick", "2", "--name", "example-blog", *args, cwd=commented.parent)
    assert named.returncode == 1
    assert "a source named 'example-blog' is already in" in named.stderr
    assert "--name" in named.stderr
    assert commented.read_text(encoding="utf-8") == before


def test_a_config_the_addition_would_make_invalid_is_left_untouched(
    httpserver: HTTPServer, commented: Path
) -> None:
    url = serve_blog(httpserver)
    before = commented.read_text(encoding="utf-8")
    result = run(
        "add",
        url,
        "--pick",
        "1",
        "--categories",
        "a/b/c/d/e/f",  # six levels: at most five
        "--config",
        str(commented),
        cwd=commented.parent,
    )
    assert result.returncode == 2
    assert "nothing written: with the new source the config would be invalid" in result.stderr
    assert "sources[1].categories: Value should have at most 5 items" in result.stderr
    assert commented.read_text(encoding="utf-8") == before
    assert not list(commented.parent.glob(".config.*"))  # no temporary file left


def test_on_a_terminal_add_asks_which_feed(httpserver: HTTPServer, commented: Path) -> None:
    url = serve_blog(httpserver)
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"2\n")  # the answer, waiting for the prompt
        process = subprocess.run(
            [sys.executable, "-m", "aggregator", "add", url, "--config", str(commented)],
            cwd=commented.parent,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, process.stderr
    assert "Add which feed [1]: " in process.stderr
    assert load_config(commented).sources[-1].url == httpserver.url_for("/blog/comments/feed.json")


def test_add_follows_the_fetch_settings_and_a_permanent_redirect(
    httpserver: HTTPServer, commented: Path
) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for("/blog/atom.xml")}
    )
    serve(httpserver, "/blog/atom.xml", "atom.xml", "application/atom+xml")
    moved = run("add", httpserver.url_for("/old"), "--config", str(commented), cwd=commented.parent)
    assert moved.returncode == 0, moved.stderr
    # Subscribed where the feed moved to, as a poll would suggest.
    assert load_config(commented).sources[-1].url == httpserver.url_for("/blog/atom.xml")

    text = commented.read_text(encoding="utf-8")
    commented.write_text(
        text.replace("  fetch:\n", "  fetch:\n    block_private_addresses: true\n"),
        encoding="utf-8",
    )
    before = commented.read_text(encoding="utf-8")
    refused = run("add", serve_blog(httpserver), "--config", str(commented), cwd=commented.parent)
    assert refused.returncode == 1
    assert "a private or local address" in refused.stderr
    assert commented.read_text(encoding="utf-8") == before


def test_add_refuses_what_is_not_an_http_url(commented: Path) -> None:
    result = run("add", "ftp://example.com/feed", "--config", str(commented), cwd=commented.parent)
    assert result.returncode == 1
    assert "not an http(s) URL: 'ftp://example.com/feed'" in result.stderr


# -- aggregator sources -----------------------------------------------------------------


@pytest.mark.both_dialects
def test_sources_lists_state_articles_and_redacted_urls(
    httpserver: HTTPServer, make_config: MakeConfig, tmp_path: Path, database: str
) -> None:
    httpserver.expect_request("/private.xml").respond_with_data(
        rss(item("1", "One") + item("2", "Two")), content_type="application/rss+xml"
    )
    secret_url = httpserver.url_for("/private.xml?token=s3cr3t-t0ken").replace(
        "http://", "http://alice:hunter2-pw@"
    )
    config = make_config(
        [
            {"url": secret_url, "categories": ["私人", "订阅"], "name": "private"},
            {"url": str(EXAMPLES / "example-blog.atom.xml"), "categories": ["Tech", "Blog"]},
            {
                "url": httpserver.url_for("/never.xml"),
                "categories": ["Off"],
                "enabled": False,
            },
        ]
    )
    assert run("poll", "--source", "private", "--config", str(config), cwd=tmp_path).returncode == 0

    table = run("sources", "--config", str(config), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "state", "last", "poll", "articles", "url"]
    private = lines[1].split()
    assert private[:2] == ["private", "ok"]
    assert private[4] == "2"  # articles
    assert private[5].endswith("/private.xml?token=***")
    assert private[5].startswith("http://***@localhost:")
    assert lines[2].split()[:3] == ["Blog", "new", "never"]
    assert lines[3].split()[:2] == ["Off", "disabled"]
    for output in (table.stdout, table.stderr):
        assert "hunter2" not in output and "s3cr3t" not in output

    listed = run("sources", "--json", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "hunter2" not in listed.stdout and "s3cr3t" not in listed.stdout
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["state"], r["articles"]) for r in rows] == [
        ("private", "ok", 2),
        ("Blog", "new", 0),
        ("Off", "disabled", 0),
    ]
    assert rows[0]["categories"] == ["私人", "订阅"]
    store = Store(database, str(tmp_path / "posts"))
    try:
        polled = store.source_states()["private"]["last_polled_at"]
    finally:
        store.close()
    assert rows[0]["last_poll"] == polled.isoformat()
    assert rows[1]["last_poll"] is None


# -- the dashboard's "Add source" form --------------------------------------------------

SECRET = "add source test secret"


class AdminClient:
    """The web app beside a (paused) service, with the adder `aggregator run` gives it."""

    def __init__(self, config_path: Path, *, adder: bool = True, replica: bool = False) -> None:
        config = load_config(config_path)
        self.config_path = config_path
        self.store = Store(config.settings.database, config.settings.posts_dir)
        self.service: Service | None = None
        self.watch: ConfigWatch | None = None
        if replica:  # as `aggregator serve`: no service, a watch of the file
            watch = self.watch = ConfigWatch(config_path, config, self.store, utcnow)
            made = SourceAdder(config_path, lambda: watch.config, watch.check)
            self.app = create_app(config, self.store, adder=made, watch=watch)
        else:
            service = self.service = Service(config_path, config, self.store)
            service.start(paused=True)
            made = SourceAdder(config_path, lambda: service.config, service.check_config)
            self.app = create_app(config, self.store, service, adder=made if adder else None)
        self.client: FlaskClient = self.app.test_client()

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None, page[:500]
        return match.group(1)

    def login(self) -> None:
        answer = self.client.post("/login", data={"secret": SECRET, "csrf": self.csrf()})
        assert answer.status_code == 302

    def close(self) -> None:
        if self.service is not None:
            self.service.shutdown()
        self.store.close()


@pytest.fixture
def admin(commented: Path, dialect: str, database: str) -> Iterator[Callable[..., AdminClient]]:
    text = commented.read_text(encoding="utf-8")
    text = text.replace("settings:\n", f"settings:\n  server:\n    admin_secret: {SECRET}\n")
    if dialect == "postgresql":
        text = text.replace("  database: db/index.sqlite\n", f"  database: {database}\n")
    commented.write_text(text, encoding="utf-8")
    made: list[AdminClient] = []

    def make(**kwargs: bool) -> AdminClient:
        made.append(AdminClient(commented, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_the_add_source_form_needs_a_login_and_the_csrf_token(
    httpserver: HTTPServer, admin: Callable[..., AdminClient]
) -> None:
    url = serve_blog(httpserver)
    dash = admin()
    before = dash.config_path.read_text(encoding="utf-8")
    assert 'id="add-source-link"' not in dash.client.get("/").get_data(as_text=True)
    answer = dash.client.get("/admin/sources/new")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")
    token = dash.csrf()
    assert dash.client.post("/admin/sources/new", data={"url": url}).status_code == 400
    assert (
        dash.client.post("/admin/sources/new", data={"url": url, "csrf": token}).status_code == 403
    )
    chosen = {"feed": httpserver.url_for("/blog/atom.xml"), "csrf": token}
    assert dash.client.post("/admin/sources/add", data=chosen).status_code == 403
    dash.login()
    assert dash.client.post("/admin/sources/new", data={"url": url}).status_code == 400
    assert dash.config_path.read_text(encoding="utf-8") == before
    assert httpserver.log == []  # nothing was fetched for a refused request


def test_add_source_from_a_page_with_two_feeds_choose_one_and_the_service_reloads(
    httpserver: HTTPServer, admin: Callable[..., AdminClient]
) -> None:
    url = serve_blog(httpserver)
    dash = admin()
    dash.login()
    before = dash.config_path.read_text(encoding="utf-8")
    overview = dash.client.get("/").get_data(as_text=True)
    assert 'id="add-source-link" href="/admin/sources/new"' in overview
    form = dash.client.get("/admin/sources/new")
    assert form.status_code == 200 and 'id="add-source"' in form.get_data(as_text=True)

    token = dash.csrf("/admin/sources/new")
    fields = {"url": url, "categories": "技术 / 博客", "name": "", "csrf": token}
    choice = dash.client.post("/admin/sources/new", data=fields)
    assert choice.status_code == 200
    page = choice.get_data(as_text=True)
    feeds = re.findall(r'name="feed" value="([^"]+)"', page)
    assert feeds == [
        httpserver.url_for("/blog/atom.xml"),
        httpserver.url_for("/blog/comments/feed.json"),
    ]
    assert "阮一峰的网络日志 – 评论 / 回复" in page
    assert dash.config_path.read_text(encoding="utf-8") == before  # nothing added yet

    hidden = dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', page))
    added = dash.client.post("/admin/sources/add", data={**hidden, "feed": feeds[1]})
    assert added.status_code == 302, added.get_data(as_text=True)
    assert added.headers["Location"] == "/sources/%E5%8D%9A%E5%AE%A2"
    text = dash.config_path.read_text(encoding="utf-8")
    assert text.startswith(before)  # comments and order kept
    assert yaml.safe_load(text)["sources"][-1] == {"url": feeds[1], "categories": ["技术", "博客"]}
    # The service reloaded the file at once: the source is known, scheduled, on its page.
    assert dash.service is not None and dash.service.config.source("博客") is not None
    assert dash.service.next_run("博客") is not None
    shown = dash.client.get(added.headers["Location"])
    assert shown.status_code == 200
    assert "Added 博客 (技术 › 博客)." in shown.get_data(as_text=True)


@pytest.mark.both_dialects
def test_add_source_on_a_replica_edits_the_file_and_syncs_it_for_the_pollers(
    httpserver: HTTPServer, admin: Callable[..., AdminClient]
) -> None:
    """`aggregator serve` has no service: the form edits the file the replica follows,
    and the reload puts the source in the index, due, where every poller reads it."""
    httpserver.expect_request("/hn").respond_with_data(
        rss(item("1", "One"), title="Hacker News"), content_type="application/rss+xml"
    )
    dash = admin(replica=True)
    dash.login()
    token = dash.csrf("/admin/sources/new")
    fields = {"url": httpserver.url_for("/hn"), "categories": "科技 / HN", "csrf": token}
    added = dash.client.post("/admin/sources/new", data=fields)
    assert added.status_code == 302, added.get_data(as_text=True)
    assert added.headers["Location"] == "/sources/HN"
    assert yaml.safe_load(dash.config_path.read_text(encoding="utf-8"))["sources"][-1] == {
        "url": httpserver.url_for("/hn"),
        "categories": ["科技", "HN"],
    }
    assert dash.watch is not None and dash.watch.config.source("HN") is not None
    with dash.store.reading() as conn:
        assert claims.next_poll(conn, "HN") is not None  # a poller's next claim takes it
    page = dash.client.get("/").get_data(as_text=True)
    assert "/feeds/%E7%A7%91%E6%8A%80/HN" in page  # the replica serves its new category

    # A hand edit is followed too; a broken one is refused and shown, the old one stays.
    text = dash.config_path.read_text(encoding="utf-8")
    dash.config_path.write_text(text + "  - url: [not, a, url]\n", encoding="utf-8")
    assert not dash.watch.check()
    assert "config reload refused" in dash.client.get("/").get_data(as_text=True)
    assert dash.watch.config.source("HN") is not None


def test_add_source_errors_are_shown_and_leave_the_config_alone(
    httpserver: HTTPServer, admin: Callable[..., AdminClient]
) -> None:
    serve(httpserver, "/", "no-feed.html", "text/html")
    httpserver.expect_request("/hn").respond_with_data(
        rss(item("1", "One"), title="Example Blog"), content_type="application/rss+xml"
    )
    dash = admin()
    dash.login()
    before = dash.config_path.read_text(encoding="utf-8")
    token = dash.csrf("/admin/sources/new")
    none = dash.client.post(
        "/admin/sources/new", data={"url": httpserver.url_for("/"), "csrf": token}
    )
    assert none.status_code == 400
    assert "no feed found at " + httpserver.url_for("/") in none.get_data(as_text=True)
    # One feed, named like an existing source: refused, with the way out.
    taken = dash.client.post(
        "/admin/sources/new",
        data={"url": httpserver.url_for("/hn"), "name": "example-blog", "csrf": token},
    )
    assert taken.status_code == 400
    page = taken.get_data(as_text=True)
    assert "a source named &#39;example-blog&#39; is already in" in page
    assert f'value="{httpserver.url_for("/hn")}"' in page  # the form keeps what was typed
    # A chosen URL that is no feed (a form can say anything) is checked.
    bogus = dash.client.post(
        "/admin/sources/add", data={"feed": httpserver.url_for("/"), "csrf": token}
    )
    assert bogus.status_code == 400
    assert "an HTML page, not a feed" in bogus.get_data(as_text=True)
    assert dash.config_path.read_text(encoding="utf-8") == before


def test_without_an_adder_the_form_says_what_to_do(
    admin: Callable[..., AdminClient],
) -> None:
    dash = admin(adder=False)
    dash.login()
    assert 'id="add-source-link"' not in dash.client.get("/").get_data(as_text=True)
    answer = dash.client.get("/admin/sources/new")
    assert answer.status_code == 409
    assert "aggregator add URL" in answer.get_data(as_text=True)
