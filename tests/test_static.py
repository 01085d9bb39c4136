"""Static feeds: every feed written as files with the bytes the web app serves for the
same path, unchanged files left alone, gone feeds' files removed, a user's files kept,
and the export run after a pass by `poll`, `run` and `export-feeds`."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from click.testing import CliRunner
from conftest import (
    EXAMPLES,
    ManualClock,
    item,
    rss,
    start_aggregator,
    start_run,
    wait_for,
    write_config,
)
from feedcheck import check

import aggregator.store.index
from aggregator.cli import cli
from aggregator.config import load_config, parse_config
from aggregator.content.selection import file_segment, static_feeds
from aggregator.errors import ConfigError
from aggregator.poll.pipeline import Poller
from aggregator.poll.scheduler import Service
from aggregator.store import Store
from aggregator.store.static import INDEX, MANIFEST, OPML, ExportReport, export_feeds
from aggregator.web import create_app

BASE = "https://blog.example.org/agg/"
OUTPUTS: list[dict[str, Any]] = [
    {"name": "python", "title": "Python posts", "tags": ["python"]},
    {"name": "中文", "categories": [["新闻"]], "rules": [{"block": "朱镕基", "field": "title"}]},
    {"name": "odd: name?", "sources": ["misc"]},  # not a file name anywhere: changed
]


class Site:
    """A polled config with static_dir, its store and its web app on a fixed clock."""

    def __init__(self, folder: Path, database: str | None = None) -> None:
        self.folder = folder
        self.database = database  # None: a SQLite file in the folder
        feeds = folder / "feeds"
        feeds.mkdir()
        shutil.copy(EXAMPLES / "sina-finance-china.rss.xml", feeds / "sina.xml")
        self.misc = feeds / "misc.xml"
        self.misc.write_text(rss(item("m1", "Misc post", "<p>One</p>")), encoding="utf-8")
        self.sources: list[dict[str, Any]] = [
            {"url": str(feeds / "sina.xml"), "categories": ["金融", "新浪财经", "新浪财经－国內"]},
            {"url": str(EXAMPLES / "example-daily-gbk.rss.xml"), "categories": "新闻/示例日报"},
            {"url": str(self.misc), "categories": ["Tech", "Example Blog", "a:b"], "name": "misc"},
            # Never polled: its feeds are empty.
            {"url": str(feeds / "none.xml"), "categories": ["Quiet"], "enabled": False},
        ]
        self.write(self.sources)
        self.now = datetime.now(UTC).replace(microsecond=0)  # entries' first-seen are real
        self.open()

    def write(self, sources: list[dict[str, Any]], outputs: list[dict[str, Any]] = OUTPUTS) -> None:
        path = write_config(
            self.folder,
            sources,
            publish={"base_url": BASE, "static_dir": "site/source/agg", "default_limit": 10},
            **({"database": self.database} if self.database else {}),
        )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["outputs"] = outputs
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        self.config_path = path

    def open(self) -> None:
        self.config = load_config(self.config_path)
        self.store = Store(self.config.settings.database, self.config.settings.posts_dir)
        self.poller = Poller(self.config, self.store, workers=1)

    def reopen(self) -> None:
        self.close()
        self.open()

    @property
    def static(self) -> Path:
        return self.folder / "site" / "source" / "agg"

    def poll(self) -> None:
        outcomes = self.poller.poll_sources([s for s in self.config.sources if s.enabled])
        assert all(o.ok for o in outcomes), outcomes

    def export(self, force: bool = True) -> ExportReport:
        return export_feeds(
            self.store, self.config, self.static, base_url=BASE, now=self.now, force=force
        )

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file in the static folder: path → (inode, mtime)."""
        return {
            p.relative_to(self.static).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in self.static.rglob("*")
            if p.is_file()
        }

    def close(self) -> None:
        self.poller.close()
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, dialect: str, database: str) -> Iterator[Site]:
    s = Site(tmp_path, database if dialect != "sqlite" else None)
    s.poll()
    yield s
    s.close()


@pytest.mark.both_dialects
def test_static_files_are_the_bytes_served_for_the_same_path(site: Site) -> None:
    site.export()
    manifest = json.loads((site.static / MANIFEST).read_text(encoding="utf-8"))
    feeds = sorted(p for p in manifest["files"] if p.startswith(("feeds/", "outputs/")))
    tree = site.config.categories()
    # all, every level of the tree, every output; in three formats each.
    assert len(feeds) == 3 * (1 + len(tree) + len(OUTPUTS))
    for path in ("feeds/金融/新浪财经/新浪财经－国內.rss", "feeds/Tech/Example Blog.atom"):
        assert path in feeds  # CJK and spaces as they are: the web app's own paths
    # The web app on the export's clock (an empty feed's updated time is "now").
    app = create_app(site.config, site.store, clock=ManualClock(site.now))
    client = app.test_client()
    compared = 0
    for path in feeds:
        body = (site.static / path).read_bytes()
        kind = path.rpartition(".")[2]
        assert check(kind, body, BASE + quote(path)) == [], path
        if path.startswith("outputs/odd") or "/a-b." in path:
            continue  # names no file may have ("odd: name?", "a:b"): see the next test
        served = client.get("/" + quote(path))
        assert served.status_code == 200, path
        assert served.data == body, path
        compared += 1
    assert compared == len(feeds) - 6
    quiet = (site.static / "feeds" / "Quiet.json").read_text(encoding="utf-8")
    assert json.loads(quiet)["items"] == []
    assert "Misc post" in (site.static / "feeds/Tech/Example Blog/a-b.rss").read_text()


def test_names_no_file_system_takes_are_changed_and_self_linked_as_written(
    site: Site,
) -> None:
    assert [file_segment(n) for n in ("新浪财经－国內（RSSHub）", "Example Blog", "100%")] == [
        "新浪财经－国內（RSSHub）",
        "Example Blog",
        "100%",
    ]
    assert [file_segment(n) for n in ("a:b", "..", ".x", "CON", "odd: name?")] == [
        "a-b",
        "untitled",
        "x",
        "_CON",
        "odd-name",
    ]
    site.export()
    for path in ("feeds/Tech/Example Blog/a-b", "outputs/odd-name"):
        for kind in ("rss", "atom", "json"):
            body = (site.static / f"{path}.{kind}").read_bytes()
            assert check(kind, body, BASE + quote(f"{path}.{kind}")) == [], path
    # Same selection as the web's own URL for it; only the self link differs.
    client = create_app(site.config, site.store, clock=ManualClock(site.now)).test_client()
    served = client.get("/outputs/" + quote("odd: name?") + ".json").json
    written = json.loads((site.static / "outputs/odd-name.json").read_bytes())
    assert served is not None and written["items"] == served["items"]
    assert written["feed_url"] == BASE + "outputs/odd-name.json"


def test_two_feeds_of_one_file_keep_the_first(tmp_path: Path) -> None:
    text = f"""
settings:
  publish: {{base_url: "{BASE}"}}
sources:
  - {{url: https://a.example/f, categories: [News]}}
  - {{url: https://b.example/f, categories: [news]}}
"""
    feeds, left_out = static_feeds(parse_config(text, base_dir=tmp_path))
    assert [f.path for f in feeds] == ["feeds/all", "feeds/News"]
    assert left_out == ["'news' is not written: its files would be those of 'News'"]


@pytest.mark.both_dialects
def test_unchanged_files_are_not_rewritten_and_changed_ones_are(site: Site) -> None:
    site.export()
    before = site.files()
    report = site.export()  # nothing changed: every file's bytes are the same
    assert report.written == () and report.removed == ()
    assert site.files() == before
    # A new entry in one source: its feeds change, the others keep inode and mtime.
    site.misc.write_text(
        rss(item("m2", "Second misc", "<p>Two</p>") + item("m1", "Misc post", "<p>One</p>")),
        encoding="utf-8",
    )
    site.now += timedelta(hours=1)
    site.poll()
    report = site.export(force=False)
    after = site.files()
    changed = {p for p in before if after[p] != before[p]}
    assert "feeds/Tech/Example Blog/a-b.rss" in changed
    assert "feeds/all.json" in changed
    assert "feeds/金融.rss" not in changed and "feeds/新闻/示例日报.atom" not in changed
    assert "feeds/Quiet.rss" not in changed  # empty, still empty: same bytes, same time
    assert changed == set(report.written) | {MANIFEST}
    # Feeds made from the same entries were not rendered again; rendering all of them
    # and comparing bytes finds nothing stale.
    assert report.unchanged > 0 and site.export().written == ()
    assert site.files() == after
    # A file of ours changed by hand (another size) is made again.
    (site.static / "feeds" / "金融.rss").write_text("damaged", encoding="utf-8")
    site.misc.write_text(rss(item("m3", "Third misc")), encoding="utf-8")
    site.poll()
    assert "feeds/金融.rss" in site.export(force=False).written
    assert (site.static / "feeds" / "金融.rss").read_bytes().startswith(b"<?xml")
    # Nothing changed since: the export is skipped without rendering anything.
    assert site.export(force=False).skipped


@pytest.mark.both_dialects
def test_gone_feeds_files_are_removed_and_users_files_kept(site: Site) -> None:
    site.static.mkdir(parents=True)
    (site.static / INDEX).write_text("<p>my own page</p>", encoding="utf-8")
    report = site.export()
    assert (site.static / INDEX).read_text(encoding="utf-8") == "<p>my own page</p>"
    assert report.notes == ("index.html is not written: a file that is not ours is there",)
    (site.static / "feeds" / "Tech" / "notes.txt").write_text("mine", encoding="utf-8")
    (site.static / "feeds" / "mine.rss").write_text("mine", encoding="utf-8")
    assert (site.static / "feeds" / "Tech" / "Example Blog" / "a-b.rss").is_file()
    # The misc source and the Quiet one leave the config: their feeds go.
    site.write(site.sources[:2], OUTPUTS[:2])
    site.reopen()
    report = site.export()
    removed = set(report.removed)
    assert "feeds/Tech/Example Blog/a-b.atom" in removed and "feeds/Quiet.json" in removed
    assert not (site.static / "feeds" / "Tech" / "Example Blog").exists()  # emptied: gone
    assert not (site.static / "feeds" / "Quiet.rss").exists()
    assert (site.static / "feeds" / "Tech" / "notes.txt").read_text() == "mine"
    assert (site.static / "feeds" / "mine.rss").read_text() == "mine"
    assert (site.static / INDEX).read_text(encoding="utf-8") == "<p>my own page</p>"
    assert (site.static / "feeds" / "金融.rss").is_file()
    opml = (site.static / OPML).read_text(encoding="utf-8")
    assert BASE + "feeds/" + quote("金融") + ".rss" in opml and "a-b" not in opml


def test_index_page_links_every_feed(site: Site) -> None:
    site.export()
    page = (site.static / INDEX).read_text(encoding="utf-8")
    for path in ("feeds/all.rss", "feeds/Tech/Example%20Blog.atom", "outputs/odd-name.json"):
        assert f'href="{path}"' in page
        assert (site.static / path.replace("%20", " ")).is_file()
    assert f'href="{quote("feeds/金融/新浪财经.rss")}"' in page


def test_check_config_asks_for_base_url_with_static_dir(tmp_path: Path) -> None:
    text = "settings:\n  publish:\n    static_dir: site/source/agg\nsources: []\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path)
    assert "config.yaml:2: settings.publish: static_dir needs base_url" in caught.value.report()
    config = parse_config(
        text.replace("sources", f"    base_url: {BASE}\nsources"), base_dir=tmp_path
    )
    assert config.settings.publish.static_dir == str(tmp_path / "site" / "source" / "agg")


def test_export_feeds_command(site: Site, tmp_path: Path) -> None:
    site.close()
    runner = CliRunner()
    out = tmp_path / "public"
    result = runner.invoke(
        cli, ["export-feeds", str(out), "--config", str(site.config_path), "--base-url", "x"]
    )
    assert result.exit_code == 2 and "absolute http(s) URL" in result.output
    result = runner.invoke(
        cli,
        ["export-feeds", str(out), "--config", str(site.config_path)],
    )
    assert result.exit_code == 0, result.output
    assert f"static feeds in {out}: " in result.stdout and " written, 0 unchanged" in result.stdout
    rss_text = (out / "feeds" / "金融.rss").read_text(encoding="utf-8")
    assert f'href="{BASE}feeds/{quote("金融")}.rss"' in rss_text
    result = runner.invoke(
        cli,
        [
            "export-feeds",
            str(out),
            "--config",
            str(site.config_path),
            "--base-url",
            "https://feeds.example.net/x",
        ],
    )
    assert result.exit_code == 0, result.output
    # Another base URL: every feed's self link changed; the index's links are relative.
    assert "40 written, 1 unchanged" in result.stdout
    assert 'href="https://feeds.example.net/x/feeds/' in (out / "feeds/金融.rss").read_text()
    site.open()


def test_export_feeds_needs_a_base_url(tmp_path: Path) -> None:
    path = write_config(tmp_path, [])
    result = CliRunner().invoke(cli, ["export-feeds", str(tmp_path / "o"), "--config", str(path)])
    assert result.exit_code == 2
    assert "give --base-url or set settings.publish.base_url" in result.output


@pytest.mark.both_dialects
def test_poll_command_writes_the_static_feeds_after_a_pass(site: Site) -> None:
    site.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["poll", "--config", str(site.config_path)])
    assert result.exit_code == 0, result.output
    assert "static feeds in " in result.stderr
    assert "Misc post" in (site.static / "feeds/Tech/Example Blog.rss").read_text()
    before = site.files()
    result = runner.invoke(cli, ["poll", "--config", str(site.config_path)])
    assert result.exit_code == 0 and "static feeds" not in result.stderr  # nothing changed
    assert site.files() == before
    result = runner.invoke(cli, ["rebuild", "--config", str(site.config_path)])
    assert result.exit_code == 0, result.output
    site.open()


@pytest.mark.both_dialects
def test_service_writes_the_static_feeds_after_a_poll(site: Site) -> None:
    site.close()
    site.misc.write_text(rss(item("m9", "Polled by the service")), encoding="utf-8")
    config = load_config(site.config_path)
    store = Store(config.settings.database, config.settings.posts_dir)
    service = Service(site.config_path, config, store, rng=random.Random(5))
    target = site.static / "feeds" / "Tech.rss"
    try:
        service.start(paused=True)
        wait_for(lambda: target.is_file(), "the export at start")
        assert "Polled by the service" not in target.read_text(encoding="utf-8")
        outcome = service._run("misc", manual=True)
        assert outcome is not None and outcome.new == 1
        wait_for(
            lambda: "Polled by the service" in target.read_text(encoding="utf-8"),
            "the export after the poll",
        )
    finally:
        service.shutdown(wait=True)
        store.close()
    site.open()


def test_run_writes_the_static_feeds(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(rss(item("r1", "运行中的文章")), encoding="utf-8")
    config = write_config(
        tmp_path,
        [{"url": str(feed), "categories": ["新闻", "本地"]}],
        schedule={"startup_spread": 0, "interval": 3600},
        server={"port": 0},
        publish={"base_url": BASE, "static_dir": "public/feeds"},
    )
    log = tmp_path / "stderr.txt"
    process, _base = start_run(config, log, {"PYTHONWARNINGS": "error"})
    target = tmp_path / "public" / "feeds" / "feeds" / "新闻" / "本地.json"
    try:
        document = wait_for(
            lambda: target.is_file() and (d := json.loads(target.read_bytes()))["items"] and d,
            "the static feed with the polled entry",
        )
        assert document["items"][0]["title"] == "运行中的文章"
        assert document["feed_url"] == BASE + "feeds/" + quote("新闻/本地") + ".json"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output


@pytest.mark.both_dialects
def test_an_export_right_after_another_processs_commit_sees_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter exports right after a poller's commit: the content version it
    checks must be read then, not the one its web-facing cache read a moment before."""
    monkeypatch.setattr(aggregator.store.index, "VERSION_RECHECK", 3600.0)
    site.export(force=False)
    site.store.content_version()  # cached now, for an hour
    other = Store(site.config.settings.database, site.config.settings.posts_dir)
    poller = Poller(site.config, other, workers=1)
    try:
        site.misc.write_text(rss(item("m9", "From another process")), encoding="utf-8")
        [outcome] = poller.poll_sources([s for s in site.config.sources if s.key == "misc"])
        assert outcome.new == 1
    finally:
        poller.close()
        other.close()
    report = site.export(force=False)
    assert not report.skipped
    assert "From another process" in (site.static / "feeds/Tech.rss").read_text()


@pytest.mark.both_dialects
def test_the_exporter_writes_the_static_feeds_in_a_split_deployment(site: Site) -> None:
    """Pollers have no folder: the static feeds, beside the posts folder, are the
    exporter's to write, at its start and after each drain that applied rows."""
    site.close()
    outbox = Store(site.config.settings.database, str(site.folder / "no-posts"), outbox=True)
    poller = Poller(site.config, outbox, workers=1)
    target = site.static / "feeds" / "Tech.rss"
    log = site.folder / "export.log"
    process = start_aggregator(["export", "--config", str(site.config_path)], site.folder, log)
    try:
        wait_for(lambda: target.is_file(), "the export at start")
        assert "Polled into the outbox" not in target.read_text(encoding="utf-8")
        site.misc.write_text(rss(item("m9", "Polled into the outbox")), encoding="utf-8")
        [outcome] = poller.poll_sources([s for s in site.config.sources if s.key == "misc"])
        assert outcome.new == 1
        wait_for(
            lambda: "Polled into the outbox" in target.read_text(encoding="utf-8"),
            "the static feed after the drain",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        # `aggregator export --once` writes them too, after its rows.
        site.misc.write_text(rss(item("m10", "Exported once")), encoding="utf-8")
        [outcome] = poller.poll_sources([s for s in site.config.sources if s.key == "misc"])
        assert outcome.new == 1
        once = CliRunner().invoke(cli, ["export", "--once", "--config", str(site.config_path)])
        assert once.exit_code == 0, once.output
        assert "Exported once" in target.read_text(encoding="utf-8")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        poller.close()
        outbox.close()
    assert "Traceback" not in log.read_text()
    site.open()


def test_hexo_publishes_the_static_feeds_as_written(site: Site, tmp_path: Path) -> None:
    hexo = Path(__file__).parent / "ssg" / "hexo"
    assert (hexo / "node_modules" / "hexo").is_dir(), "run tests/install-tools first"
    blog = tmp_path / "blog"
    blog.mkdir()
    shutil.copy(hexo / "package.json", blog / "package.json")
    config = (hexo / "_config.yml").read_text(encoding="utf-8")
    (blog / "_config.yml").write_text(config + 'skip_render: "aggregator/**"\n', "utf-8")
    (blog / "node_modules").symlink_to(hexo / "node_modules")
    folder = blog / "source" / "aggregator"
    export_feeds(site.store, site.config, folder, base_url=BASE, now=site.now)
    result = subprocess.run(
        ["node", "node_modules/hexo/bin/hexo", "generate"],
        cwd=blog,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ours = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}
    public = blog / "public" / "aggregator"
    published = {p.relative_to(public) for p in public.rglob("*") if p.is_file()}
    assert published == ours - {Path(MANIFEST)}  # hidden: left out, as it should be
    assert Path("feeds/金融/新浪财经.json") in published
    for path in published:
        assert (public / path).read_bytes() == (folder / path).read_bytes(), path


def test_a_folder_that_cannot_be_written_does_not_fail_the_poll(site: Site) -> None:
    site.close()
    (site.folder / "site").write_text("a file where the folder should be", encoding="utf-8")
    site.misc.write_text(rss(item("m7", "Still polled")), encoding="utf-8")
    result = CliRunner().invoke(cli, ["poll", "--config", str(site.config_path)])
    assert result.exit_code == 0, result.output
    assert "static feeds not written: cannot write " in result.stderr
    assert " 0 failed, " in result.stdout and "; 1 new, " in result.stdout
    site.open()
