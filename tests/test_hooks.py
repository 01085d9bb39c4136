"""Hooks tell the site: ``on_change`` commands and webhooks after passes that changed
articles (issue 12). Real processes, a real local HTTP receiver, real files; waits are
``wait_for``/``wait_idle`` on events, never a measure of speed."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    FeedFile,
    HarnessFactory,
    MakeConfig,
    item,
    open_service,
    rss,
    start_aggregator,
    start_run,
    wait_for,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.config import load_config
from aggregator.hooks import SIGNATURE_HEADER, Hooks
from aggregator.models import Changes
from aggregator.poll.scheduler import Service
from aggregator.store import Store

pytestmark = pytest.mark.both_dialects

DEADLINE = 60.0  # seconds to wait for each step before failing (not a speed assertion)


def two_items(body: str = "<p>Body</p>") -> str:
    return rss(
        item("a", "First post", body, link="https://example.com/a")
        + item("b", "Second post", "<p>Other</p>", link="https://example.com/b")
    )


def read_when_there(path: Path) -> str | None:
    """The file's text once it is there and not empty (None until then)."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def make_service(path: Path, made: list[Service]) -> Service:
    service = open_service(path, made)
    service.start(paused=True)  # polls are run by hand: ``_run``
    return service


def test_a_poll_says_which_files_and_entries_it_changed(
    make_config: MakeConfig, feed_file: FeedFile, harness: HarnessFactory
) -> None:
    feed = feed_file("f.xml", two_items())
    h = harness(make_config([{"url": str(feed), "categories": ["A", "B"], "name": "s"}]))
    [first] = h.poll()
    assert sorted(first.changes.written) == ["A/B/First-post.md", "A/B/Second-post.md"]
    assert first.changes.deleted == ()
    assert [(e.kind, e.title, e.link) for e in first.changes.entries] == [
        ("new", "First post", "https://example.com/a"),
        ("new", "Second post", "https://example.com/b"),
    ]
    [again] = h.poll()  # the same document: nothing to tell
    assert again.changes == Changes()
    feed_file("f.xml", two_items("<p>Changed</p>"))
    [edited] = h.poll()
    assert edited.changes.written == ("A/B/First-post.md",)
    assert [(e.kind, e.uid) for e in edited.changes.entries] == [
        ("updated", first.changes.entries[0].uid)
    ]


def test_retention_deletions_are_changes(
    make_config: MakeConfig, feed_file: FeedFile, harness: HarnessFactory
) -> None:
    feed = feed_file("f.xml", two_items())
    h = harness(make_config([{"url": str(feed), "categories": ["A"], "name": "s", "keep_max": 1}]))
    [outcome] = h.poll()
    assert len(outcome.changes.deleted) == 1
    assert outcome.changes.deleted[0] in outcome.changes.written
    assert not (h.posts / outcome.changes.deleted[0]).exists()


def test_aggregator_poll_runs_the_hooks_once_with_the_changed_files(
    make_config: MakeConfig, feed_file: FeedFile, tmp_path: Path, database: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    feed = feed_file("f.xml", two_items())
    script = (
        'cp "$AGGREGATOR_CHANGED_FILE" changed.txt; env | grep ^AGGREGATOR_ | sort > env.txt; '
        "pwd > cwd.txt; echo built"
    )
    argv = [sys.executable, "-c", "import sys; open('argv.txt', 'w').write(sys.argv[1])", "x y"]
    config = make_config(
        [{"url": str(feed), "categories": ["A"], "name": "s"}],
        hooks={"on_change": [script, argv], "cwd": "site"},
    )
    args = ["poll", "--config", str(config)]
    log = tmp_path / "poll.log"
    assert start_aggregator(args, tmp_path, log).wait(DEADLINE) == 0
    assert (site / "changed.txt").read_text().splitlines() == [
        "A/First-post.md",
        "A/Second-post.md",
    ]
    env = dict(line.split("=", 1) for line in (site / "env.txt").read_text().splitlines())
    assert env["AGGREGATOR_POSTS_DIR"] == str(tmp_path / "posts")
    assert (env["AGGREGATOR_CHANGED"], env["AGGREGATOR_NEW"], env["AGGREGATOR_DELETED"]) == (
        "2",
        "2",
        "0",
    )
    assert not Path(env["AGGREGATOR_CHANGED_FILE"]).exists()  # a temp file, removed after
    assert (site / "cwd.txt").read_text().strip() == str(site)
    assert (site / "argv.txt").read_text() == "x y"  # a list is argv: no shell splitting
    assert "command " in log.read_text() and ": ok (" in log.read_text()
    store = Store(database, str(tmp_path / "posts"))
    try:
        runs = store.hook_runs()
        assert [(r["kind"], r["ok"], r["exit_code"], r["files"]) for r in runs] == [
            ("command", True, 0, 2),
            ("command", True, 0, 2),
        ]
        assert runs[1]["output"] == "built\n"
        # Nothing changed: no run.
        assert start_aggregator(args, tmp_path, log).wait(DEADLINE) == 0
        assert len(store.hook_runs()) == 2
    finally:
        store.close()


def test_changes_during_a_run_make_exactly_one_later_run(
    make_config: MakeConfig, tmp_path: Path, services: list[Service]
) -> None:
    gate = tmp_path / "gate"
    record = tmp_path / "runs.txt"
    hook = (
        f'while [ ! -e "{gate}" ]; do sleep 0.02; done; '
        f'cat "$AGGREGATOR_CHANGED_FILE" >> "{record}"; echo --- >> "{record}"'
    )
    service = make_service(make_config([], hooks={"on_change": [hook], "debounce": 0}), services)
    service._changed(Changes(written=("a.md",)))
    wait_for(lambda: service.hooks._running, "the first run to start")
    service._changed(Changes(written=("b.md",)))
    service._changed(Changes(written=("c.md",), deleted=("b.md",)))
    gate.touch()
    assert service.hooks.wait_idle(DEADLINE)
    assert record.read_text().split("---\n") == ["a.md\n", "b.md\nc.md\n", ""]
    assert len(service.store.hook_runs()) == 2


def test_passes_inside_the_debounce_window_make_one_trailing_run(
    make_config: MakeConfig, tmp_path: Path, services: list[Service]
) -> None:
    record = tmp_path / "runs.txt"
    hook = f'cat "$AGGREGATOR_CHANGED_FILE" >> "{record}"; echo --- >> "{record}"'
    debounce = 2.0
    service = make_service(
        make_config([], hooks={"on_change": [hook], "debounce": debounce}), services
    )
    service._changed(Changes(written=("a.md",)))
    assert service.hooks.wait_idle(DEADLINE)
    # Both inside the window that the first run opened: one run passes both on.
    service._changed(Changes(written=("b.md",)))
    service._changed(Changes(written=("c.md",)))
    assert service.hooks.wait_idle(DEADLINE)
    assert record.read_text().split("---\n") == ["a.md\n", "b.md\nc.md\n", ""]
    second, first = service.store.hook_runs()
    # Correctness, not speed: the trailing run waited for the window to pass.
    assert (second["started_at"] - first["started_at"]).total_seconds() >= debounce - 0.1


def served_feed(server: HTTPServer, bodies: list[str]) -> str:
    """A feed that answers with the next of ``bodies`` each time (the last one after)."""
    answers = iter(bodies)
    last = [bodies[0]]

    def answer(_request: Request) -> Response:
        last[0] = next(answers, last[0])
        return Response(last[0], headers={"Content-Type": "application/rss+xml"})

    server.expect_request("/feed").respond_with_handler(answer)
    return server.url_for("/feed")


def test_a_failing_hook_is_recorded_and_polling_goes_on(
    make_config: MakeConfig, httpserver: HTTPServer, services: list[Service]
) -> None:
    url = served_feed(httpserver, [two_items(), two_items("<p>Changed</p>")])
    config = make_config(
        [{"url": url, "categories": ["A"], "name": "s"}],
        hooks={"on_change": ["echo broken >&2; exit 3"], "debounce": 0},
        workers=1,
    )
    service = make_service(config, services)
    first = service._run("s")
    assert first is not None and first.new == 2
    assert service.hooks.wait_idle(DEADLINE)
    [run] = service.store.hook_runs()
    assert (run["ok"], run["exit_code"], run["error"], run["output"]) == (
        False,
        3,
        "exit status 3",
        "broken\n",
    )
    second = service._run("s")
    assert second is not None and second.ok and second.updated == 1
    assert service.hooks.wait_idle(DEADLINE)
    assert len(service.store.hook_runs()) == 2  # it ran again after the next change


def test_a_hooks_binary_output_is_recorded(
    make_config: MakeConfig, httpserver: HTTPServer, services: list[Service]
) -> None:
    """A NUL byte in a command's output (PostgreSQL's text cannot hold one: the run
    went unrecorded there) is kept as the replacement character, as invalid UTF-8 is."""
    url = served_feed(httpserver, [two_items()])
    config = make_config(
        [{"url": url, "categories": ["A"], "name": "s"}],
        hooks={"on_change": ["printf 'a\\000b\\377c\\n'"], "debounce": 0},
        workers=1,
    )
    service = make_service(config, services)
    assert service._run("s") is not None
    assert service.hooks.wait_idle(DEADLINE)
    [run] = service.store.hook_runs()
    assert (run["ok"], run["output"]) == (True, "a\ufffdb\ufffdc\n")


def test_a_hanging_hook_is_killed_at_its_timeout_with_its_children(
    make_config: MakeConfig, httpserver: HTTPServer, tmp_path: Path, services: list[Service]
) -> None:
    url = served_feed(httpserver, [two_items(), two_items("<p>Changed</p>")])
    pids = tmp_path / "pids"
    hook = f'sleep 1000 & echo "$$ $!" > "{pids}"; wait'
    config = make_config(
        [{"url": url, "categories": ["A"], "name": "s"}],
        hooks={"on_change": [hook], "debounce": 0, "timeout": 1},
        workers=1,
    )
    service = make_service(config, services)
    assert service._run("s") is not None
    shell, sleeper = map(int, wait_for(lambda: read_when_there(pids), "pids").split())
    # Polling goes on while the hook hangs: this poll returns and is recorded.
    second = service._run("s")
    assert second is not None and second.ok and second.updated == 1
    run = wait_for(lambda: next(iter(service.store.hook_runs()), None), "the hook's record")
    assert (run["ok"], run["error"]) == (False, "timed out after 1 s: killed")
    wait_for(lambda: pid_gone(shell) and pid_gone(sleeper), "the hook's processes to end")


def test_sigterm_kills_a_running_hook_and_stops(
    make_config: MakeConfig, httpserver: HTTPServer, tmp_path: Path
) -> None:
    url = served_feed(httpserver, [two_items()])
    pids = tmp_path / "pids"
    hook = f'sleep 1000 & echo "$$ $!" > "{pids}"; wait'
    config = make_config(
        [{"url": url, "categories": ["A"], "name": "s"}],
        hooks={"on_change": [hook], "debounce": 0},
        schedule={"startup_spread": 0},
        server={"port": 0},
        workers=1,
    )
    log = tmp_path / "run.log"
    process, _ = start_run(config, log)
    try:
        shell, sleeper = map(int, wait_for(lambda: read_when_there(pids), "the hook").split())
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
    wait_for(lambda: pid_gone(shell) and pid_gone(sleeper), "the hook's processes to end")
    assert "stopped" in log.read_text()


class Receiver:
    """A webhook receiver: answers ``fail`` times with 503, then 204; keeps each body."""

    def __init__(self, server: HTTPServer, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.url = server.url_for("/hook")
        server.expect_request("/hook", method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append((request.get_data(), dict(request.headers)))
            if len(self.requests) <= self.fail:
                return Response("busy", status=503)
        return Response(status=204)


def entries_of(body: bytes) -> list[dict[str, Any]]:
    document = json.loads(body)
    assert document["event_type"] == "entries"
    entries: list[dict[str, Any]] = document["entries"]
    return entries


def test_a_webhook_gets_the_entries_signed(
    make_config: MakeConfig,
    httpserver: HTTPServer,
    threaded_httpserver: HTTPServer,
    services: list[Service],
) -> None:
    url = served_feed(httpserver, [two_items()])
    receiver = Receiver(threaded_httpserver)
    config = make_config(
        [{"url": url, "categories": ["A", "B"], "name": "s"}],
        hooks={"webhooks": [{"url": receiver.url, "secret": "s3cret"}]},
        workers=1,
    )
    service = make_service(config, services)
    assert service._run("s") is not None
    assert service.hooks.wait_idle(DEADLINE)
    [(body, headers)] = receiver.requests
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert headers["Content-Type"].startswith("application/json")
    entries = entries_of(body)
    assert [(e["change"], e["title"], e["link"], e["categories"], e["path"]) for e in entries] == [
        ("new", "First post", "https://example.com/a", ["A", "B"], "A/B/First-post.md"),
        ("new", "Second post", "https://example.com/b", ["A", "B"], "A/B/Second-post.md"),
    ]
    assert all(e["uid"] and e["date"].startswith("2024-01-01") for e in entries)
    [run] = service.store.hook_runs()
    assert (run["kind"], run["ok"], run["exit_code"], run["files"]) == ("webhook", True, 204, 2)


def test_a_failing_webhook_is_retried_with_backoff(
    make_config: MakeConfig, threaded_httpserver: HTTPServer, tmp_path: Path
) -> None:
    receiver = Receiver(threaded_httpserver, fail=2)
    config = load_config(
        make_config([], hooks={"webhooks": [{"url": receiver.url}], "backoff": 0.05})
    )
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        hooks = Hooks(config.settings.hooks, store)
        change = Changes(written=("x.md",))
        assert hooks.run_now(change) == []  # files alone: no entry to tell a webhook
        [run] = hooks.run_now(Changes(entries=_one_entry()))
        assert (run.ok, run.attempts, run.exit_code) == (True, 3, 204)
        assert len(receiver.requests) == 3
        assert len({body for body, _ in receiver.requests}) == 1  # the same document
        assert all(SIGNATURE_HEADER not in headers for _, headers in receiver.requests)
    finally:
        store.close()


def test_a_webhook_that_keeps_failing_is_recorded(
    make_config: MakeConfig, threaded_httpserver: HTTPServer
) -> None:
    receiver = Receiver(threaded_httpserver, fail=100)
    config = load_config(
        make_config([], hooks={"webhooks": [{"url": receiver.url}], "backoff": 0.01, "retries": 2})
    )
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        [run] = Hooks(config.settings.hooks, store).run_now(Changes(entries=_one_entry()))
        assert (run.ok, run.attempts, run.error) == (False, 3, "HTTP 503")
        [row] = store.hook_runs()
        assert (row["ok"], row["attempts"], row["exit_code"]) == (False, 3, 503)
    finally:
        store.close()


def _one_entry() -> tuple[Any, ...]:
    from datetime import UTC, datetime

    from aggregator.models import EntryChange, Person

    return (
        EntryChange(
            kind="new",
            source="s",
            uid="u1",
            title="T",
            link="https://example.com/t",
            authors=(Person("Jane Doe"),),
            categories=("A",),
            tags=(),
            date=datetime(2024, 1, 1, tzinfo=UTC),
            path="A/T.md",
        ),
    )


def test_the_overview_shows_the_last_hook_runs(make_config: MakeConfig, tmp_path: Path) -> None:
    from aggregator.web import create_app

    config = load_config(make_config([], hooks={"on_change": ["exit 3"]}))
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        hooks = Hooks(config.settings.hooks, store)
        hooks.run_now(Changes(written=("a.md",)))
        page = create_app(config, store).test_client().get("/").get_data(as_text=True)
        assert '<table id="hooks">' in page
        assert "<code>exit 3</code>" in page and "exit status 3" in page
    finally:
        store.close()


def test_a_stop_ends_a_run_at_once(make_config: MakeConfig, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    config = load_config(
        make_config([], hooks={"on_change": [f'echo $$ > "{pids}"; exec sleep 1000']})
    )
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        hooks = Hooks(config.settings.hooks, store)
        hooks.notify(Changes(written=("a.md",)))
        pid = int(wait_for(lambda: read_when_there(pids), "the hook"))
        hooks.close()
        wait_for(lambda: pid_gone(pid), "the hook to end")
        [run] = store.hook_runs()
        assert (run["ok"], run["error"]) == (False, "stopped: the service is shutting down")
    finally:
        store.close()


def test_hooks_settings_are_checked(make_config: MakeConfig) -> None:
    from aggregator.errors import ConfigError

    bad: dict[str, Any]
    for bad in ({"on_change": [""]}, {"on_change": [[]]}, {"webhooks": [{"url": "ftp://x/"}]}):
        with pytest.raises(ConfigError):
            load_config(make_config([], hooks=bad))
    assert Path(
        load_config(make_config([], hooks={"cwd": "site"})).settings.hooks.cwd
    ).is_absolute()


SSG = Path(__file__).parent / "ssg"


def test_worked_example_a_hexo_site_rebuilds_itself(
    make_config: MakeConfig, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """README's worked example, with a real Hexo: each `aggregator poll` that changes
    articles runs `hexo generate` in the site, whose pages then hold the new text."""
    assert (SSG / "hexo" / "node_modules" / "hexo").is_dir(), "run tests/install-tools first"
    site = tmp_path / "blog"
    (site / "themes" / "bare" / "layout").mkdir(parents=True)
    (site / "package.json").write_bytes((SSG / "hexo" / "package.json").read_bytes())
    hexo_config = (SSG / "hexo" / "_config.yml").read_text()
    (site / "_config.yml").write_text(hexo_config.replace("theme: false", "theme: bare"))
    layout = "<article><h1>{{ page.title }}</h1>{{ page.content | safe }}</article>\n"
    (site / "themes" / "bare" / "layout" / "post.njk").write_text(layout)
    (site / "node_modules").symlink_to(SSG / "hexo" / "node_modules")
    url = served_feed(
        httpserver,
        [
            rss(item("a", "Hello", "<p>The first version.</p>")),
            rss(item("a", "Hello", "<p>The second version.</p>")),
        ],
    )
    config = make_config(
        [{"url": url, "categories": ["News", "Example"], "name": "s"}],
        posts_dir="blog/source/_posts",
        hooks={"cwd": "blog", "on_change": [["node_modules/.bin/hexo", "generate"]]},
    )

    def page() -> str:
        [built] = list((site / "public").rglob("index.html"))
        return built.read_text()

    log = tmp_path / "poll.log"
    args = ["poll", "--config", str(config)]
    assert start_aggregator(args, tmp_path, log).wait(DEADLINE * 5) == 0, log.read_text()
    assert "<h1>Hello</h1>" in page() and "The first version." in page()
    assert start_aggregator(args, tmp_path, log).wait(DEADLINE * 5) == 0, log.read_text()
    assert "The second version." in page() and "first" not in page()
    assert ": ok (" in log.read_text()


def test_a_dashboard_rebuild_that_rewrites_files_runs_the_hooks(
    make_config: MakeConfig, httpserver: HTTPServer, tmp_path: Path, services: list[Service]
) -> None:
    url = served_feed(httpserver, [two_items()])
    record = tmp_path / "changed.txt"
    config = make_config(
        [{"url": url, "categories": ["A"], "name": "s"}],
        hooks={"on_change": [f'cp "$AGGREGATOR_CHANGED_FILE" "{record}"'], "debounce": 0},
        workers=1,
    )
    service = make_service(config, services)
    assert service._run("s") is not None
    assert service.hooks.wait_idle(DEADLINE)
    article = tmp_path / "posts" / "A" / "First-post.md"
    article.write_text(article.read_text() + "\nedited by hand\n")  # rebuild writes it back
    assert service.rebuild()
    assert service.runner.wait(DEADLINE)
    assert service.hooks.wait_idle(DEADLINE)
    assert record.read_text() == "A/First-post.md\n"
    assert len(service.store.hook_runs()) == 2


def test_hook_texts_are_redacted_for_visitors(make_config: MakeConfig) -> None:
    from aggregator.web import create_app

    command = "echo https://bot:hunter2@git.example.com/site.git?token=abc; exit 1"
    config = load_config(make_config([], hooks={"on_change": [command]}))
    store = Store(config.settings.database, config.settings.posts_dir)
    try:
        Hooks(config.settings.hooks, store).run_now(Changes(written=("a.md",)))
        page = create_app(config, store).test_client().get("/").get_data(as_text=True)
        assert "git.example.com" in page
        assert "hunter2" not in page and "token=abc" not in page
    finally:
        store.close()
