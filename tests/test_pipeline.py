"""The whole path from a feed document to article files and the index, on real files,
with a SQLite index and a PostgreSQL one."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from conftest import (
    DATA,
    EXAMPLES,
    ROOT,
    FeedFile,
    HarnessFactory,
    MakeConfig,
    force_render_key,
    item,
    lose_index,
    rss,
)

from aggregator.poll.pipeline import utcnow

pytestmark = pytest.mark.both_dialects

SINA_REMOVE = [".appendQr_wrap", ".ori_titlesource", ".article-editor"]
SINA_CATEGORIES = ["金融", "新浪财经", "新浪财经－国內"]


def front_and_body(path: Path) -> tuple[dict[str, object], str]:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert match is not None
    return yaml.safe_load(match.group(1)), match.group(2)


def test_golden_sina_article_with_the_default_config(tmp_path: Path) -> None:
    """The seed's feed item, polled with the repository's own config.yaml."""
    from aggregator.config import load_config
    from aggregator.poll.pipeline import Poller
    from aggregator.store import Store

    config_path = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config.yaml", config_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    config = load_config(config_path)
    sina = next(s for s in config.sources if s.url.endswith("sina-finance-china.rss.xml"))
    store = Store(config.settings.database, config.settings.posts_dir)
    poller = Poller(config, store, workers=1)
    try:
        [outcome] = poller.poll_sources([sina])
    finally:
        poller.close()
        store.close()
    assert outcome.ok
    assert outcome.new == 1

    files = list(Path(config.settings.posts_dir).rglob("*.md"))
    assert len(files) == 1
    assert files[0].relative_to(config.settings.posts_dir).parts[:3] == tuple(SINA_CATEGORIES)
    front, body = front_and_body(files[0])
    assert list(front)[:7] == [
        "title",
        "categories",
        "headimg",
        "author",
        "comments",
        "date",
        "thumbnail",
    ]
    assert front["title"] == "政企合作促数字化转型 上海虹口区首推转型创新基地"
    assert front["categories"] == SINA_CATEGORIES
    assert front["author"] == "新浪财经"
    assert front["comments"] is False
    assert front["date"] == "Tue, 12 Oct 2021 09:00:27 GMT"
    assert front["headimg"] == ""
    assert front["thumbnail"] == ""
    assert front["link"] == "https://finance.sina.com.cn/china/2021-10-12/doc-example0001.shtml"

    paragraphs = [
        "日前，“虹口数字化转型创新基地”正式揭牌",
        "智慧城市的建设离不开数字化转型创新场景的应用与落地",
        "“数字化转型创新基地的形成是政企合作",
        "围绕5G新基建、智慧城市建设、数字化转型",
        "虹口数字化转型创新基地在瑞安办公旗下瑞虹企业天地的落成",
        "对此，瑞安管理（上海）有限公司及中国新天地执行董事张斌表示",
        "与此同时，城市数字化转型需要将整个城市作为一个有机生命体",
        "在瑞安房地产产品研发及定位部副总经理阳磊看来",
    ]
    for paragraph in paragraphs:
        assert f"<p>　　{paragraph}" in body
    assert "<!--" not in body
    assert "<style" not in body.lower()
    assert "appendQr" not in body
    assert "海量资讯" not in body
    assert "343233024" not in body
    assert "{" not in body
    assert "}" not in body
    assert all(
        line.strip() and not line.startswith((" ", "\t")) for line in body.strip().split("\n")
    )


def test_rerun_rewrites_nothing(make_config: MakeConfig, harness: HarnessFactory) -> None:
    h = harness(
        make_config(
            [
                {
                    "url": str(EXAMPLES / "sina-finance-china.rss.xml"),
                    "categories": SINA_CATEGORIES,
                    "remove": SINA_REMOVE,
                },
                {
                    "url": str(EXAMPLES / "example-blog.atom.xml"),
                    "categories": ["Tech", "Blog", "Eng"],
                },
                {
                    "url": str(EXAMPLES / "example-daily-gbk.rss.xml"),
                    "categories": ["新闻", "示例", "要闻"],
                },
            ]
        )
    )
    first = h.poll()
    assert [o.new for o in first] == [1, 2, 2]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in h.files()}
    h.now += timedelta(hours=1)
    second = h.poll()
    # Same bytes as last time: nothing is parsed at all.
    assert all(o.not_modified and o.ok for o in second)
    assert [(o.new, o.updated, o.unchanged) for o in second] == [(0, 0, 0)] * 3
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in h.files()}
    assert after == before
    # A fresh process (new store, new poller) agrees.
    h.close()
    h.reload()
    # Parsed again from scratch (new render settings would do this too): still no writes.
    force_render_key(h.poller, "forced")
    third = h.poll()
    assert sum(o.unchanged for o in third) == 5
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in h.files()} == before


def test_entry_updated_upstream_is_rewritten_in_place(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("g1", "Original title", "<p>First version</p>")))
    h = harness(make_config([{"url": str(path), "categories": ["A", "B", "C"]}]))
    h.poll()
    [file] = h.files()
    feed_file("f.xml", rss(item("g1", "Changed title", "<p>Second version</p>")))
    [outcome] = h.poll()
    assert (outcome.new, outcome.updated) == (0, 1)
    assert h.files() == [file]  # same file: the name stays stable for the entry's life
    front, body = front_and_body(file)
    assert front["title"] == "Changed title"
    assert "Second version" in body
    assert "First version" not in body


def test_repeated_guid_keeps_items_apart_and_ids_stable(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    items = [
        item("same", f"Item {n}", f"<p>Body {n}</p>", link=f"https://e.com/{n}") for n in (1, 2, 3)
    ]
    path = feed_file("f.xml", rss("".join(items)))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    [outcome] = h.poll()
    assert outcome.new == 3
    ids = {front_and_body(f)[0]["title"]: front_and_body(f)[0]["entry_id"] for f in h.files()}
    assert len(set(ids.values())) == 3
    # Next poll: the first item is gone and a fourth arrives; nobody changes identity.
    items = [
        item("same", f"Item {n}", f"<p>Body {n}</p>", link=f"https://e.com/{n}") for n in (4, 2, 3)
    ]
    feed_file("f.xml", rss("".join(items)))
    [outcome] = h.poll()
    assert (outcome.new, outcome.updated, outcome.unchanged) == (1, 0, 2)
    again = {front_and_body(f)[0]["title"]: front_and_body(f)[0]["entry_id"] for f in h.files()}
    assert len(again) == 4
    assert {t: again[t] for t in ids} == ids


def test_namesakes_get_distinct_stable_files(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file(
        "f.xml", rss(item("a", "Same title", "<p>A</p>") + item("b", "Same title", "<p>B</p>"))
    )
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    names = sorted(p.name for p in h.files())
    assert "Same-title.md" in names
    [other] = [n for n in names if n != "Same-title.md"]
    assert re.fullmatch(r"Same-title-[0-9a-f]{8}\.md", other)
    h.poll()
    assert sorted(p.name for p in h.files()) == names


def test_namesakes_of_sources_sharing_a_folder_stored_together_get_distinct_files(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    """The writer stores a pass's polls together, their rows after all their files: the
    second source's name choice sees the name the first one took in the same batch, even
    one that differs only in case (no file of that name on a case-sensitive disk, and
    the folder's kept listing is current with our own writes)."""
    earlier = item("x", "Earlier", "<p>x</p>")
    other = item("y", "Other", "<p>y</p>")
    first = feed_file("one.xml", rss(earlier))
    second = feed_file("two.xml", rss(other))
    h = harness(
        make_config(
            [
                {"url": str(first), "name": "one", "categories": ["Shared"]},
                {"url": str(second), "name": "two", "categories": ["Shared"]},
            ]
        )
    )
    assert [o.new for o in h.poll()] == [1, 1]  # the shared folder is listed, and kept
    feed_file("one.xml", rss(earlier + item("a", "Same title", "<p>From one</p>")))
    feed_file("two.xml", rss(other + item("b", "SAME TITLE", "<p>From two</p>")))
    h.now += timedelta(hours=1)
    assert [o.new for o in h.poll()] == [1, 1]
    files = h.files()
    names = sorted(p.name for p in files)
    assert len({n.lower() for n in names}) == 4  # no two names fold alike
    assert names[:2] == ["Earlier.md", "Other.md"]
    # Whichever poll the writer got first took the plain name.
    assert names[2:] in (
        ["SAME-TITLE.md", "Same-title-" + names[3][11:]],
        ["SAME-TITLE-" + names[2][11:], "Same-title.md"],
    )
    assert all(re.fullmatch(r"(SAME-TITLE|Same-title)(-[0-9a-f]{8})?\.md", n) for n in names[2:])
    bodies = sorted(front_and_body(p)[1].strip() for p in files)
    assert bodies[:2] == ["<div><p>From one</p></div>", "<div><p>From two</p></div>"]
    with h.store.engine.connect() as conn:
        paths = conn.exec_driver_sql("SELECT path FROM entries").scalars().all()
    assert sorted(paths) == sorted(str(p.relative_to(h.posts)) for p in files)
    h.now += timedelta(hours=1)
    force_render_key(h.poller, "forced")
    assert [(o.new, o.unchanged) for o in h.poll()] == [(0, 2), (0, 2)]
    assert h.files() == files


def test_a_users_own_file_is_never_overwritten(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "My post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    mine = h.posts / "A" / "My-post.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("---\ntitle: mine\n---\nhand written\n", encoding="utf-8")
    h.poll()
    assert mine.read_text(encoding="utf-8") == "---\ntitle: mine\n---\nhand written\n"
    assert len(h.files()) == 2


def test_crash_between_file_and_index_is_recovered_without_a_duplicate(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    # Simulate a crash after the file was written but before the index commit.
    h.close()
    lose_index(h.config.settings.database)
    h.reload()
    [outcome] = h.poll()
    assert outcome.new == 1
    assert h.files() == [file]


def test_deleted_article_file_is_restored(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    content = file.read_bytes()
    file.unlink()
    [outcome] = h.poll()
    assert outcome.not_modified
    assert not file.exists()
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.updated == 1
    assert file.read_bytes() == content
    file.unlink()
    feed_file("f.xml", rss(item("a", "Post") + item("b", "Another")))
    [outcome] = h.poll()  # the feed changed: every entry is checked, the file comes back
    assert (outcome.new, outcome.updated) == (1, 1)
    assert file.read_bytes() == content


def test_rebuild_rewrites_a_file_newer_than_its_index_row(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post", "<p>Version one</p>")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    rendered = file.read_bytes()
    # A killed update: the new file was renamed into place, its index row never committed.
    file.write_bytes(rendered.replace(b"Version one", b"Version two"))
    [outcome] = h.poller.rebuild(h.config.sources)
    assert (outcome.updated, outcome.unchanged) == (1, 0)
    assert file.read_bytes() == rendered
    [again] = h.poller.rebuild(h.config.sources)  # now the file is what the index says
    assert (again.updated, again.unchanged) == (0, 1)


def test_rebuild_never_overwrites_someone_elses_file(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    mine = "---\ntitle: my own notes\n---\n\nWritten by hand.\n"
    file.write_text(mine, encoding="utf-8")  # no entry_id: not one of our articles
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.updated == 0
    assert file.read_text(encoding="utf-8") == mine
    assert any("is not this entry's article" in w for w in outcome.warnings)


def test_bad_entry_never_stops_its_feed_and_bad_feed_never_stops_the_run(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    good = feed_file("good.xml", rss(item("a", "Fine") + item("b", "Also fine")))
    broken = feed_file("broken.xml", b"\x00\x01 this is not a feed")
    html = feed_file("page.html", "<!doctype html><html><body><p>Just a page</p></body></html>")
    empty = feed_file("empty.xml", b"")
    h = harness(
        make_config(
            [
                {"url": str(broken), "categories": ["X"], "name": "broken"},
                {"url": str(html), "categories": ["X"], "name": "page"},
                {"url": str(empty), "categories": ["X"], "name": "empty"},
                {"url": str(good), "categories": ["Y"], "name": "good"},
                {"url": str(good.parent / "missing.xml"), "categories": ["Z"], "name": "missing"},
            ]
        )
    )
    outcomes = {o.source: o for o in h.poll()}
    assert outcomes["good"].ok
    assert outcomes["good"].new == 2
    for name in ("broken", "page", "empty", "missing"):
        assert not outcomes[name].ok, name
        state = h.store.source_state(name)
        assert state is not None
        assert state["last_error"] == outcomes[name].error
    assert "empty document" in str(outcomes["empty"].error)
    assert "cannot read file" in str(outcomes["missing"].error)
    assert h.store.polls("broken")[0]["error"]


def test_truncated_feed_keeps_the_entries_it_has(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    document = rss(item("a", "First") + item("b", "Second") + item("c", "Third"))
    path = feed_file("t.xml", document[: document.index("<item>", 300) + 40])
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    [outcome] = h.poll()
    assert outcome.ok
    assert outcome.new >= 1
    assert any("First" in p.read_text(encoding="utf-8") for p in h.files())


def test_unwritable_posts_folder_is_recorded_and_recovers(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile, tmp_path: Path
) -> None:
    import os

    path = feed_file("f.xml", rss(item("a", "Post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.posts.mkdir(parents=True, exist_ok=True)  # the store makes it at open
    h.posts.chmod(0o500)
    try:
        if os.access(h.posts, os.W_OK):  # root ignores permissions: block with a file instead
            h.posts.chmod(0o700)
            (h.posts / "A").write_text("a file where a folder must go")
        [outcome] = h.poll()
        assert not outcome.ok
        assert "cannot write" in str(outcome.error)
        assert h.store.count_entries() == 0
    finally:
        h.posts.chmod(0o700)
    (h.posts / "A").unlink(missing_ok=True)
    [outcome] = h.poll()
    assert outcome.ok
    assert outcome.new == 1
    assert not list(h.posts.rglob(".*.tmp"))


def test_retention_prunes_and_never_brings_entries_back(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    items = "".join(
        item(f"g{n}", f"Post {n}", date=f"Mon, 0{n} Jan 2024 10:00:00 GMT") for n in range(1, 6)
    )
    path = feed_file("f.xml", rss(items))
    h = harness(make_config([{"url": str(path), "categories": ["A"], "keep_max": 2}]))
    [outcome] = h.poll()
    assert outcome.new == 5
    assert outcome.dropped == 3
    assert sorted(p.name for p in h.files()) == ["Post-4.md", "Post-5.md"]
    feed_file("f.xml", rss(items + item("g0", "Old post", date="Sun, 31 Dec 2023 10:00:00 GMT")))
    [outcome] = h.poll()
    # The three pruned entries stay pruned; the new, older one is kept then pruned.
    assert (outcome.new, outcome.unchanged, outcome.dropped) == (1, 2, 4)
    assert len(h.files()) == 2
    assert h.store.count_entries(pruned=True) == 4


def test_keep_days_skips_old_entries(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    now = utcnow()
    old = (now - timedelta(days=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    new = (now - timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    path = feed_file("f.xml", rss(item("old", "Old", date=old) + item("new", "New", date=new)))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}], keep_days=7))
    h.now = now
    [outcome] = h.poll()
    assert (outcome.new, outcome.dropped) == (1, 1)
    assert [p.name for p in h.files()] == ["New.md"]


def test_rebuild_applies_changed_rules_to_stored_entries(
    make_config: MakeConfig, harness: HarnessFactory, sina_copy: Path
) -> None:
    config_path = make_config([{"url": str(sina_copy), "categories": SINA_CATEGORIES}])
    h = harness(config_path)
    h.poll()
    [file] = h.files()
    assert "海量资讯" in file.read_text(encoding="utf-8")  # no rules yet: the promo text stays
    sina_copy.unlink()  # the source is gone: rebuild works from the stored raw entry
    config_path.write_text(
        config_path.read_text(encoding="utf-8").replace(
            "categories:", f"remove: {SINA_REMOVE!r}\n  categories:", 1
        ),
        encoding="utf-8",
    )
    h.close()
    h.reload()
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.ok
    assert outcome.updated == 1
    assert h.files() == [file]
    assert "海量资讯" not in file.read_text(encoding="utf-8")
    mtime = file.stat().st_mtime_ns
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.unchanged == 1
    assert file.stat().st_mtime_ns == mtime


def test_disabled_sources_are_not_polled(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "Post")))
    h = harness(make_config([{"url": str(path), "categories": ["A"], "enabled": False}]))
    assert h.poll() == []
    assert h.files() == []


def test_index_holds_what_republishing_needs(
    make_config: MakeConfig, harness: HarnessFactory
) -> None:
    h = harness(
        make_config(
            [
                {
                    "url": str(EXAMPLES / "example-blog.atom.xml"),
                    "categories": ["Tech", "Blog", "Eng"],
                },
            ]
        )
    )
    h.poll()
    rows = {r["title"]: r for r in h.store.entries()}
    post = rows['Parsing feeds: fast & "safe" — part 1']
    assert post["link"] == "https://blog.example.org/posts/parsing-feeds-1/"
    assert post["headimg"] == "https://blog.example.org/images/cover-1.png"
    assert '"python"' in post["tags"]
    assert "<script" not in post["body_html"]
    assert "onclick" not in post["body_html"]
    assert post["summary"].startswith("Feeds are messy.")
    assert (h.posts / post["path"]).is_file()


def test_crash_then_title_change_adopts_the_orphan_file(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", rss(item("a", "First title")))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    # The index never saw the file (a kill before the commit), and the title then changed.
    h.close()
    lose_index(h.config.settings.database)
    feed_file("f.xml", rss(item("a", "Second title")))
    h.reload()
    [outcome] = h.poll()
    assert outcome.new == 1
    assert h.files() == [file]  # adopted under its first name, not a second copy
    front, _ = front_and_body(file)
    assert front["title"] == "Second title"


def test_rebuild_never_reverts_a_newer_poll(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    from aggregator.poll.worker import prepare_stored

    path = feed_file("f.xml", rss(item("a", "Version one", "<p>one</p>")))
    h = harness(make_config([{"url": str(path), "categories": ["A"], "name": "s"}]))
    h.poll()
    source = h.config.sources[0]
    with h.store.transaction() as conn:
        read_by_rebuild = h.store.entries_for_rebuild(conn, "s")  # a rebuild reads ...
    feed_file("f.xml", rss(item("a", "Version two", "<p>two</p>")))
    h.poll()  # ... a poll stores a newer version meanwhile ...
    resolved = h.poller.resolved(source)
    prepared = prepare_stored(resolved.view, [raw for _, raw in read_by_rebuild], h.now)
    with h.store.transaction() as conn:  # ... and the rebuild applies what it read
        applied = h.poller.ingest.write_files(
            conn,
            resolved,
            prepared.articles,
            h.now,
            keys=[key for key, _ in read_by_rebuild],
            force=True,
        )
        h.poller.ingest.write_rows(conn, applied)
    [file] = h.files()
    assert "Version two" in file.read_text(encoding="utf-8")


def test_twins_stored_by_earlier_versions_keep_their_identity(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    """Before, a document repeating an id stored its first version under the id and the
    rest under the alt key: two articles, identical ones too. Now the document gives
    one article, and that old pair gets neither a third article nor a lost one."""
    from aggregator.content.convert import convert_entry
    from aggregator.content.parse import parse_feed
    from aggregator.poll.decide import Known, decide, make_batch

    twice = item("g", "Same", "<p>v1</p>", link="https://e.com/g") + item(
        "g", "Same", "<p>v2</p>", link="https://e.com/g"
    )
    path = feed_file("f.xml", rss(twice))
    h = harness(make_config([{"url": str(path), "categories": ["A"], "name": "s"}]))
    source = h.poller.resolved(h.config.sources[0])
    # What the earlier version stored for this document: "g" and its alt key.
    entries = parse_feed(str(path), path.read_bytes()).entries
    first, second = (convert_entry(e, source.view, h.now) for e in entries)
    assert first.alt_key == second.alt_key
    plan = decide(source, make_batch(source, ["g", first.alt_key], [first, second]), Known(), h.now)
    assert not h.store.files.write_files(plan.writes)
    rows, _ = plan.settle({})
    with h.store.transaction() as conn:
        h.store.upsert_entries(conn, rows)
    before = {p: p.read_bytes() for p in h.files()}
    assert len(before) == 2

    [outcome] = h.poll()
    assert (outcome.new, outcome.updated, outcome.unchanged) == (0, 0, 1)
    assert any("appears 2 times in the document; kept the last" in w for w in outcome.warnings)
    assert {p: p.read_bytes() for p in h.files()} == before
    # The feed moves on: the kept version's article is updated, still no third one.
    feed_file("f.xml", rss(item("g", "Same", "<p>v3</p>", link="https://e.com/g")))
    [outcome] = h.poll()
    assert (outcome.new, outcome.updated) == (0, 1)
    assert len(h.files()) == 2
    assert sum("v3" in p.read_text(encoding="utf-8") for p in h.files()) == 1


def test_a_repeated_id_never_writes_twins(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    twice = item("g", "Same", "<p>Body</p>") * 2 + item("g", "Same", "<p>Body</p>")
    path = feed_file("f.xml", rss(twice))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    [outcome] = h.poll()
    assert (outcome.new, len(h.files())) == (1, 1)
    assert outcome.warnings == ("id 'g' appears 3 times in the document; kept the last ('Same')",)
    assert h.store.polls(h.config.sources[0].key)[0]["warnings"]


def test_a_future_date_is_trusted_once_it_has_come(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    """Polled two days early, an entry is dated when first seen; polls leave it so while
    it is unchanged (nothing is rewritten); a rebuild after the date trusts it (the
    choice README.md documents)."""
    soon = item("g", "Soon", date="Sun, 04 Jan 2026 00:00:00 GMT")
    path = feed_file("f.xml", rss(soon))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))  # now: 2 Jan 2026
    [outcome] = h.poll()
    assert outcome.new == 1
    assert any("not trusted: published 2026-01-04" in w for w in outcome.warnings)
    [file] = h.files()
    assert front_and_body(file)[0]["date"] == "Fri, 02 Jan 2026 03:04:05 GMT"
    before = file.read_bytes()
    h.now += timedelta(days=3)
    feed_file("f.xml", rss(item("h", "Later") + soon))
    [outcome] = h.poll()  # parsed again: the entry is unchanged, its file left alone
    assert (outcome.new, outcome.unchanged) == (1, 1)
    assert not outcome.warnings
    assert file.read_bytes() == before
    [rebuilt] = h.poller.rebuild(h.config.sources)
    assert rebuilt.updated == 1
    assert front_and_body(file)[0]["date"] == "Sun, 04 Jan 2026 00:00:00 GMT"


def test_an_untitled_entry_keeps_its_file_when_its_text_arrives(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    no_text = '<item><guid isPermaLink="false">g</guid><description></description></item>'
    path = feed_file("f.xml", rss(no_text))
    h = harness(make_config([{"url": str(path), "categories": ["A"]}]))
    h.poll()
    [file] = h.files()
    assert file.name == "untitled.md"
    feed_file(
        "f.xml", rss(no_text.replace("</description>", "Now it says something.</description>"))
    )
    [outcome] = h.poll()
    assert outcome.updated == 1
    assert h.files() == [file]  # the name is the entry's for life
    assert front_and_body(file)[0]["title"] == "Now it says something"


def test_undeclared_shift_jis_feed_becomes_readable_articles_and_the_guess_is_recorded(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("sjis.xml", (DATA / "parse" / "undeclared-shift-jis.xml").read_bytes())
    h = harness(make_config([{"url": str(path), "categories": ["ニュース"], "name": "sjis"}]))
    [outcome] = h.poll()
    assert outcome.ok
    assert outcome.new == 2
    assert "encoding not declared; guessed Shift_JIS" in outcome.warnings
    titles = sorted(str(front_and_body(p)[0]["title"]) for p in h.files())
    assert titles == ["政府が新しい経済対策を発表", "東京の桜が満開になりました"]
    [poll] = h.store.polls("sjis")
    assert "encoding not declared; guessed Shift_JIS" in str(poll["warnings"])


def test_cut_and_channel_only_feeds_poll_ok(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    """A feed cut after its last entry keeps it; a new feed with no items yet and an
    HTML entity in its title is "ok, 0 entries", not a failure."""
    cut = feed_file("cut.xml", (DATA / "parse" / "cut-after-last-item.xml").read_bytes())
    empty = DATA / "parse" / "channel-only-undefined-entity.xml"
    h = harness(
        make_config(
            [
                {"url": str(cut), "categories": ["A"], "name": "cut"},
                {"url": str(feed_file("new.xml", empty.read_bytes())), "categories": ["B"]},
            ]
        )
    )
    cut_outcome, empty_outcome = h.poll()
    assert (cut_outcome.ok, cut_outcome.new, cut_outcome.failed) == (True, 1, 0)
    assert [front_and_body(p)[0]["title"] for p in h.files()] == ["Complete entry"]
    assert (empty_outcome.ok, empty_outcome.new, empty_outcome.error) == (True, 0, None)
    assert any("undefined entity" in w for w in empty_outcome.warnings)
