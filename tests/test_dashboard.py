"""Dashboard pages and admin actions through the Flask test client; OPML round trip."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES, FIXED_NOW, MakeConfig, item, rss, wait_for
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from aggregator.config import load_config
from aggregator.opml import export_opml, parse_opml
from aggregator.poll.pipeline import Poller, utcnow
from aggregator.poll.scheduler import JobRunner, Service
from aggregator.store import Store, jobs
from aggregator.store.locks import LockHeld
from aggregator.web import create_app

pytestmark = pytest.mark.both_dialects

SECRET = "correct horse battery staple"
HOSTILE = (
    '<p>Before</p><script>alert("script")</script>'
    '<img src="https://img.example/x.png" onerror="alert(1)">'
    '<a href="javascript:alert(2)">js link</a> <a href="JaVaScRiPt:alert(3)">mixed</a>'
    '<svg onload="alert(4)"><circle r="1"/></svg><iframe src="javascript:alert(5)"></iframe>'
    '<div style="background:url(javascript:alert(6))">styled</div>'
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==">data</a>'
    '<p onmouseover="alert(8)">After</p>'
)


class Dash:
    def __init__(self, config_path: Path, service: bool = False) -> None:
        self.config = load_config(config_path)
        self.store = Store(self.config.settings.database, self.config.settings.posts_dir)
        self.store.sync_sources(self.config.sources, FIXED_NOW)  # as every entry point
        poller = Poller(self.config, self.store, workers=1)
        poller.poll_sources([s for s in self.config.sources if s.enabled])
        poller.close()
        self.service = Service(config_path, self.config, self.store) if service else None
        if self.service is not None:
            self.service.start(paused=True)
        self.app = create_app(self.config, self.store, self.service)
        self.client: FlaskClient = self.app.test_client()

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None, page[:500]
        return match.group(1)

    def login(self, secret: str = SECRET) -> TestResponse:
        return self.client.post("/login", data={"secret": secret, "csrf": self.csrf("/login")})

    def close(self) -> None:
        if self.service is not None:
            self.service.shutdown()
        self.store.close()


@pytest.fixture
def make_dash(make_config: MakeConfig, tmp_path: Path) -> Iterator[Callable[..., Dash]]:
    made: list[Dash] = []
    (tmp_path / "hostile.xml").write_text(
        rss(item("h1", "Hostile <b>title</b>", HOSTILE, link="javascript:alert(9)")),
        encoding="utf-8",
    )

    def make(secret: str | None = SECRET, service: bool = False) -> Dash:
        server = {"admin_secret": secret} if secret else {}
        path = make_config(
            [
                {
                    "url": str(EXAMPLES / "sina-finance-china.rss.xml"),
                    "categories": ["金融", "新浪财经", "新浪财经－国內"],
                    "remove": [".appendQr_wrap"],
                },
                {
                    "url": str(tmp_path / "hostile.xml"),
                    "categories": ["Tests", "Hostile"],
                    "name": "hostile",
                },
                {
                    "url": str(tmp_path / "missing.xml"),
                    "categories": ["Tests", "Missing"],
                    "name": "missing",
                },
                {
                    "url": str(EXAMPLES / "example-blog.atom.xml"),
                    "categories": ["Tech"],
                    "name": "off",
                    "enabled": False,
                },
            ],
            server=server,
        )
        dash = Dash(path, service)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.close()


def uid_of(dash: Dash, title_start: str) -> str:
    [row] = [r for r in dash.store.entries() if r["title"].startswith(title_start)]
    return str(row["uid"])


def test_overview_shows_sources_states_feeds_articles_totals(
    make_dash: Callable[..., Dash],
) -> None:
    dash = make_dash(secret=None)
    page = dash.client.get("/").get_data(as_text=True)
    assert "金融 › 新浪财经 › 新浪财经－国內" in page
    assert '<span class="status status-ok">ok</span>' in page
    assert '<span class="status status-erroring">erroring</span>' in page  # the missing file
    assert "cannot read file" in page
    assert '<span class="status status-disabled">disabled</span>' in page
    assert 'data-url="/feeds/%E9%87%91%E8%9E%8D.rss"' in page  # copy button
    assert "政企合作促数字化转型" in page
    assert re.search(r"<b>2</b> articles", page)
    assert 'id="source-search" name="q"' in page and 'href="/?sort=name"' in page
    assert "Admin login" not in page and "Rebuild" not in page  # read-only: no secret


def test_every_page_has_security_headers(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    uid = uid_of(dash, "政企合作")
    for path in (
        "/",
        "/sources/hostile",
        f"/articles/{uid}",
        "/healthz",
        "/metrics",
        "/opml",
        "/login",
        "/feeds/all.rss",
    ):
        response = dash.client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert dash.client.get("/sources/nope").status_code == 404
    assert dash.client.get("/articles/nope").status_code == 404


def test_no_inline_script_or_style_in_pages(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    dash.login()
    for path in ("/", "/sources/hostile", f"/articles/{uid_of(dash, 'Hostile')}", "/login"):
        page = dash.client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert "<style" not in page and " style=" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path


def test_hostile_article_content_is_neutralised(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    page = dash.client.get(f"/articles/{uid_of(dash, 'Hostile')}").get_data(as_text=True)
    body = page.split('<article class="body">', 1)[1].split("</article>", 1)[0]
    assert "Before" in body and "After" in body and "styled" in body
    lowered = body.lower()
    for bad in (
        "<script",
        "onerror",
        "onload",
        "onmouseover",
        "javascript:",
        "<svg",
        "<iframe",
        "data:text/html",
        "style=",
    ):
        assert bad not in lowered, bad
    assert 'referrerpolicy="no-referrer"' in body
    assert "javascript:alert(9)" not in page  # the entry's own link is not made a link


def test_source_page_history_suggestions_and_drops(make_dash: Callable[..., Dash]) -> None:
    from aggregator.models import Status
    from aggregator.store.records import SourceStateUpdate

    dash = make_dash()
    page = dash.client.get("/sources/missing").get_data(as_text=True)
    assert "cannot read file" in page and 'id="polls"' in page
    with dash.store.transaction() as conn:
        dash.store.save_state(
            conn,
            SourceStateUpdate(name="hostile", url="x", moved_to="https://new.example/feed.xml"),
        )
    page = dash.client.get("/sources/hostile").get_data(as_text=True)
    assert "url: https://new.example/feed.xml" in page
    with dash.store.transaction() as conn:
        dash.store.save_state(
            conn, SourceStateUpdate(name="missing", url="x", status=Status.GONE, reason="410")
        )
    assert "enabled: false" in dash.client.get("/sources/missing").get_data(as_text=True)


def test_article_page_shows_front_matter_link_and_file(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    page = dash.client.get(f"/articles/{uid_of(dash, '政企合作')}").get_data(as_text=True)
    assert "title: &#39;政企合作促数字化转型 上海虹口区首推转型创新基地&#39;" in page
    assert 'href="https://finance.sina.com.cn/china/2021-10-12/doc-example0001.shtml"' in page
    assert "政企合作促数字化转型-上海虹口区首推转型创新基地.md" in page


def test_healthz_and_metrics(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    health = dash.client.get("/healthz").get_json()
    assert health["status"] == "degraded"
    assert any(r.startswith("missing: erroring") for r in health["reasons"])
    dash.client.get("/feeds/all.rss")
    metrics = dash.client.get("/metrics").get_data(as_text=True)
    assert "aggregator_polls_total 3" in metrics
    assert "aggregator_poll_errors_total 1" in metrics
    assert 'aggregator_entries{state="kept"} 2' in metrics
    assert 'aggregator_sources{status="erroring"} 1' in metrics
    assert 'aggregator_feed_requests_total{format="rss"} 1' in metrics
    assert "aggregator_poll_duration_seconds_count 3" in metrics


def test_read_only_without_a_secret(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash(secret=None)
    assert dash.client.get("/login").status_code == 403
    for path in (
        "/admin/rebuild",
        "/admin/sources/hostile/pause",
        "/admin/sources/hostile/refresh",
    ):
        assert dash.client.post(path, data={"csrf": "x"}).status_code == 403


def test_wrong_secret_and_missing_csrf(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash()
    assert dash.login("wrong secret, long enough").status_code == 403
    assert (
        dash.client.post("/admin/sources/hostile/pause", data={"csrf": dash.csrf()}).status_code
        == 403
    )
    assert dash.login().status_code == 302
    assert dash.client.post("/admin/sources/hostile/pause").status_code == 400  # no token
    assert (
        dash.client.post("/admin/sources/hostile/pause", data={"csrf": "forged"}).status_code == 400
    )
    assert dash.client.get("/admin/sources/hostile/pause").status_code == 405  # POST only
    assert (dash.store.source_state("hostile") or {})["status"] == "ok"


def test_pause_resume_rebuild_and_refresh(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash(service=True)
    dash.login()
    token = dash.csrf()
    assert "Rebuild all articles" in dash.client.get("/").get_data(as_text=True)
    assert dash.client.post("/admin/sources/hostile/pause", data={"csrf": token}).status_code == 302
    state = dash.store.source_state("hostile") or {}
    assert (state["status"], state["reason"]) == ("paused", "paused by the admin")
    assert dash.service is not None and dash.service.next_run("hostile") is None
    assert (
        dash.client.post("/admin/sources/hostile/resume", data={"csrf": token}).status_code == 302
    )
    assert (dash.store.source_state("hostile") or {})["status"] == "ok"
    assert dash.service.next_run("hostile") is not None
    response = dash.client.post("/admin/sources/missing/refresh", data={"csrf": token})
    assert response.status_code == 302
    assert "Refresh of missing scheduled." in dash.client.get("/sources/missing").get_data(
        as_text=True
    )
    assert dash.client.post("/admin/sources/nope/refresh", data={"csrf": token}).status_code == 404
    file = next(Path(dash.config.settings.posts_dir).rglob("*.md"))
    file.unlink()
    assert dash.client.post("/admin/rebuild", data={"csrf": token}).status_code == 302
    assert dash.service.runner.wait(60)  # the service runs it in the background
    assert file.exists()
    status = dash.service.rebuild_status
    assert (status.sources, status.error) == (4, None) and status.finished_at is not None
    assert "Last rebuild finished" in dash.client.get("/").get_data(as_text=True)
    assert dash.client.post("/logout", data={"csrf": token}).status_code == 302
    assert (
        dash.client.post("/admin/sources/hostile/pause", data={"csrf": dash.csrf()}).status_code
        == 403
    )


def test_without_the_service_refresh_pause_and_resume_are_rows(
    make_dash: Callable[..., Dash],
) -> None:
    """A web replica (no poller in its process) asks any poller through the index."""
    dash = make_dash(service=False)
    dash.login()
    post = dash.client.post
    assert post("/admin/sources/hostile/refresh", data={"csrf": dash.csrf()}).status_code == 302
    state = dash.store.source_state("hostile") or {}
    assert state["wake"] == "manual" and state["next_poll_at"] is not None
    assert post("/admin/sources/hostile/pause", data={"csrf": dash.csrf()}).status_code == 302
    state = dash.store.source_state("hostile") or {}
    assert (state["status"], state["next_poll_at"]) == ("paused", None)
    assert post("/admin/sources/hostile/resume", data={"csrf": dash.csrf()}).status_code == 302
    state = dash.store.source_state("hostile") or {}
    assert state["status"] == "ok" and state["wake"] == "manual"


def test_opml_round_trip(make_dash: Callable[..., Dash], tmp_path: Path) -> None:
    dash = make_dash()
    first = dash.client.get("/opml").data
    outline = {(f.url, f.categories) for f in parse_opml(first)}
    assert len(outline) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    config = empty / "config.yaml"
    config.write_text(
        "# an empty config: keep this comment\nsettings:\n  workers: 1  # and this\n"
        f"  fetch:\n    file_roots: [{tmp_path}, {EXAMPLES}]\n",
        encoding="utf-8",
    )
    exported = tmp_path / "export.opml"
    exported.write_bytes(first)
    result = subprocess.run(
        [sys.executable, "-m", "aggregator", "import-opml", "--config", str(config), str(exported)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "4 sources added, 0 already in" in result.stdout
    text = config.read_text(encoding="utf-8")
    assert text.startswith("# an empty config: keep this comment\n")
    assert "workers: 1  # and this" in text
    again = export_opml(load_config(config).sources)
    assert {(f.url, f.categories) for f in parse_opml(again)} == outline
    repeat = subprocess.run(
        [sys.executable, "-m", "aggregator", "import-opml", "--config", str(config), str(exported)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "0 sources added, 4 already in" in repeat.stdout
    assert yaml.safe_load(config.read_text(encoding="utf-8"))["sources"][0]["categories"] == [
        "金融",
        "新浪财经",
        "新浪财经－国內",
    ]


def test_opml_rejects_garbage() -> None:
    from aggregator.opml import OpmlError

    with pytest.raises(OpmlError):
        parse_opml(b"<html><body>no</body></html>")
    with pytest.raises(OpmlError):
        parse_opml(b"\x00\x01 not xml")


def test_no_secret_is_logged(
    make_dash: Callable[..., Dash], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    dash = make_dash(service=True)
    dash.login("a wrong secret of some length")
    dash.login()
    dash.client.post("/admin/sources/hostile/pause", data={"csrf": dash.csrf()})
    assert "failed admin login" in caplog.text
    assert SECRET not in caplog.text
    assert "a wrong secret of some length" not in caplog.text


def test_without_the_service_a_rebuild_is_a_row_a_process_with_pollers_runs(
    make_dash: Callable[..., Dash],
) -> None:
    dash = make_dash(service=False)  # create_app() alone, as `aggregator serve` or under WSGI
    dash.login()
    token = dash.csrf()
    file = next(Path(dash.config.settings.posts_dir).rglob("*.md"))
    file.unlink()
    assert dash.client.post("/admin/rebuild", data={"csrf": token}).status_code == 302
    page = dash.client.get("/").get_data(as_text=True)
    assert "Rebuild asked for;" in page
    assert "it starts when a process with pollers" in page
    dash.client.post("/admin/rebuild", data={"csrf": token})
    assert "No rebuild asked for: one is already waiting or running." in dash.client.get(
        "/"
    ).get_data(as_text=True)
    assert not file.exists()  # nothing here runs it

    # Another process's service (`aggregator run` or `aggregator poller`) looks for jobs.
    runner = JobRunner(dash.store, lambda: Poller(dash.config, dash.store, workers=1))
    runner.look()
    assert runner.wait(60)
    assert file.exists()
    status = runner.rebuild_status
    assert (status.sources, status.error, status.runner) == (4, None, runner.name)
    assert "Last rebuild finished" in dash.client.get("/").get_data(as_text=True)


def test_rebuilds_run_one_at_a_time_across_processes(make_dash: Callable[..., Dash]) -> None:
    dash = make_dash(service=False)
    go_on = threading.Event()

    def make_poller() -> Poller:
        go_on.wait(60)  # holds the first rebuild until the others were asked for
        return Poller(dash.config, dash.store, workers=1)

    first = JobRunner(dash.store, make_poller)
    other = JobRunner(dash.store, lambda: Poller(dash.config, dash.store, workers=1))
    dash.app = create_app(dash.config, dash.store, rebuilds=first)  # as `aggregator run`
    dash.client = dash.app.test_client()
    dash.login()
    token = dash.csrf()
    dash.client.post("/admin/rebuild", data={"csrf": token})
    # Its thread takes the row a moment after the request (then waits for go_on).
    wait_for(lambda: first.rebuild_status.running, "the rebuild to start")
    page = dash.client.get("/").get_data(as_text=True)
    assert "Rebuild asked for;" in page and "Rebuilding since" in page
    assert not other.rebuild()  # one is running: another process's button says so too
    with dash.store.transaction() as conn:  # a prune asked for meanwhile waits its turn
        assert jobs.request(conn, jobs.PRUNE, utcnow(), "test")
    other.look()  # the jobs lock is held: it runs nothing now
    assert other.wait(60)
    with dash.store.reading() as conn:
        prune = jobs.latest(conn, jobs.PRUNE)
    assert prune is not None and prune.state == jobs.PENDING
    with pytest.raises(LockHeld), jobs.lock(dash.store.engine):
        pass  # what `aggregator rebuild` meets now
    go_on.set()
    assert first.wait(60)  # it took the waiting prune after its rebuild
    with dash.store.reading() as conn:
        rebuild, prune = jobs.latest(conn, jobs.REBUILD), jobs.latest(conn, jobs.PRUNE)
    assert rebuild is not None and (rebuild.state, rebuild.runner) == (jobs.DONE, first.name)
    assert prune is not None and (prune.state, prune.result) == (
        jobs.DONE,
        {"sources": 4, "pruned": 0},
    )
    assert "Last rebuild finished" in dash.client.get("/").get_data(as_text=True)


def test_a_crashed_rebuild_is_reported_and_the_next_one_runs(
    make_dash: Callable[..., Dash],
) -> None:
    dash = make_dash(service=False)
    pollers = iter([None, Poller(dash.config, dash.store, workers=1)])

    def make_poller() -> Poller:
        poller = next(pollers)
        if poller is None:
            raise OSError("no room for the worker processes")
        return poller

    runner = JobRunner(dash.store, make_poller)
    dash.app = create_app(dash.config, dash.store, rebuilds=runner)
    dash.client = dash.app.test_client()
    dash.login()
    assert runner.rebuild() and runner.wait(60)
    assert runner.rebuild_status.error == "no room for the worker processes"
    page = dash.client.get("/").get_data(as_text=True)
    assert "stopped: no room for the worker processes" in page
    assert runner.rebuild() and runner.wait(60)
    assert runner.rebuild_status.error is None and runner.rebuild_status.sources == 4


def test_the_app_follows_the_services_config_reloads(
    make_dash: Callable[..., Dash], tmp_path: Path
) -> None:
    dash = make_dash(service=True)
    assert dash.service is not None
    before = dash.client.get("/feeds/all.rss").get_data(as_text=True)
    assert "<title>aggregator: all</title>" in before
    assert dash.client.get("/feeds/Later.rss").status_code == 404
    path = tmp_path / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["settings"]["publish"] = {"title": "Renamed"}
    data["sources"][-1]["categories"] = ["Later"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert dash.service.reload()
    # The cached feed is stale: the configuration's fingerprint changed with it.
    assert "<title>Renamed: all</title>" in dash.client.get("/feeds/all.rss").get_data(as_text=True)
    assert dash.client.get("/feeds/Later.rss").status_code == 200
    assert dash.client.get("/feeds/Tech.rss").status_code == 404
    assert 'href="/feeds/Later.rss"' in dash.client.get("/").get_data(as_text=True)


def test_pages_show_the_byline_else_the_site(make_config: MakeConfig, tmp_path: Path) -> None:
    feed = tmp_path / "bylines.xml"
    feed.write_text(
        rss(
            item("b1", "Signed", "<p>x</p>").replace(
                "<item>", "<item><author>jo@paper.example (Jo &lt;b&gt;Bold&lt;/b&gt;)</author>"
            )
            + item("b2", "Unsigned", "<p>y</p>", date="Sun, 31 Dec 2023 10:00:00 GMT")
        ),
        encoding="utf-8",
    )
    config = make_config([{"url": str(feed), "categories": ["News", "The Paper"], "name": "p"}])
    dash = Dash(config)
    try:
        overview = dash.client.get("/").get_data(as_text=True)
        source = dash.client.get("/sources/p").get_data(as_text=True)
        signed = dash.client.get(f"/articles/{uid_of(dash, 'Signed')}").get_data(as_text=True)
        unsigned = dash.client.get(f"/articles/{uid_of(dash, 'Unsigned')}").get_data(as_text=True)
    finally:
        dash.close()
    for page in (overview, source, signed):
        assert "Jo &lt;b&gt;Bold&lt;/b&gt;" in page  # escaped, never markup
        assert "<b>Bold" not in page
    assert re.search(r"<small>The Paper · ", overview)  # the unsigned one is the site's
    assert '<p class="muted">The Paper · ' in unsigned
