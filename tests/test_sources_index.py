"""Issue 13, sources: ``include:`` globs of source-list files, the sources synced into the
index's ``sources`` table (added, changed, removed), and a reload that notices an
included file's change. Real files on tmp_path, a real SQLite index; the index's side on
PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import FIXED_NOW, open_service, stored_bytes

from aggregator.config import load_config, parse_config
from aggregator.errors import ConfigError
from aggregator.models import Status
from aggregator.poll.scheduler import Service
from aggregator.store import Store
from aggregator.store.schema import sources_table


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def source_list(*names: str, category: str = "News") -> str:
    return "".join(
        f"- url: https://{name}.example.com/feed.xml\n  categories: [{category}, {name}]\n"
        for name in names
    )


def config_text(
    sources: str = "",
    include: str = "include: [sources.d/*.yaml]\n",
    database: str = "data/index.sqlite",
) -> str:
    return (
        f"settings:\n  database: '{database}'\n  posts_dir: posts\n"
        + include
        + ("sources:\n" + "\n".join("  " + line for line in sources.splitlines()) + "\n")
        * bool(sources)
    )


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


# -- include: ------------------------------------------------------------------------------


def test_included_files_add_their_sources_in_name_order(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("own")))
    write(tmp_path / "sources.d" / "b.yaml", source_list("b1", "b2"))
    write(tmp_path / "sources.d" / "a.yaml", source_list("a1"))
    write(tmp_path / "sources.d" / ".a.yaml.swp", "not: [yaml")  # hidden: never matched
    write(tmp_path / "sources.d" / "notes.txt", "not a source list")
    loaded = load_config(config)
    assert [s.key for s in loaded.sources] == ["own", "a1", "b1", "b2"]
    assert loaded.include == ("sources.d/*.yaml",)
    assert loaded.source("b2") is not None and loaded.source("b2") is loaded.sources[3]


def test_config_without_include_is_unchanged(tmp_path: Path) -> None:
    text = config_text(source_list("one", "two"), include="")
    config = write(tmp_path / "config.yaml", text)
    assert [s.key for s in load_config(config).sources] == ["one", "two"]
    assert load_config(config).include == ()


def test_errors_in_an_included_file_name_that_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("own")))
    write(
        tmp_path / "sources.d" / "news.yaml",
        source_list("fine")
        + "- url: ftp://example.com/feed\n  categories: [News, bad]\n"
        + "- url: https://x.example.com/\n  categories: [News, typo]\n  intervall: 2h\n",
    )
    shown = config.parent / "sources.d" / "news.yaml"
    assert problems(config) == [
        f"{shown}:3: [1].url: URL scheme 'ftp' is not supported (use http, https or a path)",
        f"{shown}:7: [2].intervall: unknown key (check its spelling)",
    ]


def test_errors_show_the_included_file_relative_as_the_config_was_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.yaml", config_text())
    write(tmp_path / "sources.d" / "news.yaml", source_list("a") + "- url: https://b.example\n")
    assert problems(Path("config.yaml")) == [
        "sources.d/news.yaml:3: [1].categories: required key is missing"
    ]


def test_yaml_errors_and_duplicate_keys_in_an_included_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", config_text())
    write(tmp_path / "sources.d" / "a.yaml", "- url: [unclosed\n  categories: [a]\n")
    write(
        tmp_path / "sources.d" / "b.yaml",
        "- url: https://b.example.com/\n  categories: [B]\n  categories: [C]\n",
    )
    write(tmp_path / "sources.d" / "c.yaml", "url: https://c.example.com/\n")
    folder = config.parent / "sources.d"
    assert problems(config) == [
        f"{folder / 'a.yaml'}:2: YAML syntax error: expected ',' or ']', but got ':'",
        f"{folder / 'b.yaml'}:3: [0].categories: duplicate key",
        f"{folder / 'c.yaml'}:1: an included file holds a list of sources",
    ]


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("own", "twice")))
    write(tmp_path / "sources.d" / "a.yaml", source_list("a1", "twice"))
    write(tmp_path / "sources.d" / "b.yaml", source_list("b1") + source_list("a1"))
    a, b = config.parent / "sources.d" / "a.yaml", config.parent / "sources.d" / "b.yaml"
    assert problems(config) == [
        f"{a}:3: [1]: source name 'twice' is already used by {config}:8 (sources[1]) "
        "(give one of them a distinct `name`)",
        f"{b}:3: [1]: source name 'a1' is already used by {a}:1 ([0]) "
        "(give one of them a distinct `name`)",
    ]


def test_include_must_be_globs_and_a_plain_name_must_exist(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", config_text(include="include: [missing.yaml]\n"))
    assert problems(config) == [f"{config}:4: include[0]: no such file: missing.yaml"]
    write(config, config_text(include="include: {a: 1}\n"))
    assert problems(config) == [f"{config}:4: include: must be a list of file globs (strings)"]
    write(config, config_text(include="include: [empty.d/*.yaml]\n"))  # matches nothing: fine
    assert load_config(config).sources == ()


def test_outputs_may_name_included_sources(tmp_path: Path) -> None:
    text = config_text() + "outputs:\n  - name: mine\n    sources: [inc]\n"
    write(tmp_path / "sources.d" / "a.yaml", source_list("inc"))
    config = parse_config(text, str(tmp_path / "config.yaml"), tmp_path)
    assert config.output("mine") is not None


# -- the fast reader gives what yaml.safe_load gives ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: 0x1f\nc: 1_000\nd: 1.5e3\ne: .inf\nf: ~\ng: null\nh: yes\ni: Off\n",
        "j: 2024-01-02\nk: 2024-01-02T03:04:05Z\nl: '0x1f'\nm: \"yes\"\nn: a-b\no: 07\np: 0o7\n",
        "q: [1, two, 3.0, {r: s}]\nt: |\n  block\n  text\nu: >-\n  folded\n  line\n",
        "v: 90s\nw: 2h\nx: ''\ny:\nz: 1:30\n? complexish\n: value\n",
        "a: &anchor {b: 1}\nc: *anchor\n",  # anchors and aliases: PyYAML's own path
        "a: {b: 1}\nc:\n  <<: {d: 2}\n  e: 3\n",  # a merge key
        "a: !!str 5\n",  # an explicit tag
        "",
        "# only a comment\n",
    ],
)
def test_the_fast_reader_matches_safe_load(text: str) -> None:
    from aggregator.config import _read_yaml

    data, _lines, duplicates = _read_yaml(text, "t.yaml")
    assert data == yaml.safe_load(text)
    assert duplicates == []


def test_lines_of_a_large_config_are_exact(tmp_path: Path) -> None:
    sources = source_list(*(f"s{n}" for n in range(300)))
    sources += "- url: https://bad.example.com/\n  categories: [News, a, b, c, d, e]\n"
    config = write(tmp_path / "config.yaml", config_text(sources, include=""))
    assert problems(config) == [
        f"{config}:606: sources[300].categories: Value should have at most 5 items after "
        "validation, not 6"
    ]


# -- sources in the index ------------------------------------------------------------------


def sync(config_path: Path, store: Store, minutes: int = 0) -> tuple[tuple[str, ...], ...]:
    done = store.sync_sources(
        load_config(config_path).sources, FIXED_NOW + timedelta(minutes=minutes)
    )
    return done.added, done.changed, done.removed


@pytest.fixture
def store(tmp_path: Path, database: str) -> Iterator[Store]:
    made = Store(database, str(tmp_path / "posts"))
    yield made
    made.close()


@pytest.mark.both_dialects
def test_sync_adds_changes_and_removes_sources(tmp_path: Path, store: Store) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("a", "b", "c")))
    write(tmp_path / "sources.d" / "more.yaml", source_list("d", category="Tech"))
    assert sync(config, store) == (("a", "b", "c", "d"), (), ())
    assert sync(config, store, 1) == ((), (), ())  # nothing changed: nothing written
    row = store.source_settings("a")
    assert row is not None
    assert row["url"] == "https://a.example.com/feed.xml"
    assert row["host"] == "a.example.com"
    assert row["categories"] == ("News", "a")
    assert row["enabled"] is True and row["removed_at"] is None
    assert row["added_at"] == FIXED_NOW
    assert row["settings"]["interval"] is None and row["status"] is Status.NEW

    # b gets an interval and is disabled, c goes, e comes (in the included file).
    text = config_text(source_list("a") + source_list("b") + "  interval: 2h\n  enabled: false\n")
    write(config, text)
    write(tmp_path / "sources.d" / "more.yaml", source_list("d", "e", category="Tech"))
    assert sync(config, store, 2) == (("e",), ("b",), ("c",))
    b = store.source_settings("b")
    assert b is not None and b["settings"]["interval"] == 7200.0 and b["enabled"] is False
    assert b["added_at"] == FIXED_NOW  # still when it first came
    c = store.source_settings("c")
    assert c is not None and c["removed_at"] == FIXED_NOW + timedelta(minutes=2)
    assert store.source_keys() == ["a", "b", "d", "e"]
    assert store.source_keys(removed=True) == ["c"]
    assert store.source_keys(category=["Tech"]) == ["d", "e"]
    assert store.source_keys(category=["News"], enabled=True) == ["a"]
    assert store.source_keys(limit=2, after="a") == ["b", "d"]
    assert store.count_sources() == 4 and store.count_sources(category=["News", "b"]) == 1

    # c comes back: the same row, no longer removed.
    write(config, config_text(source_list("a", "c")))
    assert sync(config, store, 3) == ((), ("c",), ("b",))
    c = store.source_settings("c")
    assert c is not None and c["removed_at"] is None and c["added_at"] == FIXED_NOW


def listed(store: Store) -> list[tuple[str, int, str, str, str]]:
    """(name, position, label, redacted URL, search text) of the listed sources."""
    t = sources_table.c
    query = (
        sa.select(t.name, t.position, t.label, t.url_shown, t.search)
        .where(t.position.is_not(None))
        .order_by(t.position)
    )
    with store.reading() as conn:
        return [tuple(row) for row in conn.execute(query)]


@pytest.mark.both_dialects
def test_sync_keeps_the_overview_columns(tmp_path: Path, store: Store) -> None:
    """Config positions, labels, redacted URLs and search texts follow the config; a
    source that only moved gets its position, and is not reported as changed."""
    config = write(tmp_path / "config.yaml", config_text(source_list("a", "b", "c"), include=""))
    sync(config, store)
    assert [row[:2] for row in listed(store)] == [("a", 0), ("b", 1), ("c", 2)]
    moved = (
        source_list("c", "a") + "- url: https://b.example.com/f?key=K1\n  categories: [Ünï, b]\n"
    )
    write(config, config_text(moved, include=""))
    assert sync(config, store, 1) == ((), ("b",), ())  # c and a moved: not changed
    assert listed(store) == [
        (
            "c",
            0,
            "News › c",
            "https://c.example.com/feed.xml",
            "c\nnews › c\nhttps://c.example.com/feed.xml",
        ),
        (
            "a",
            1,
            "News › a",
            "https://a.example.com/feed.xml",
            "a\nnews › a\nhttps://a.example.com/feed.xml",
        ),
        (
            "b",
            2,
            "Ünï › b",
            "https://b.example.com/f?key=***",
            "b\nünï › b\nhttps://b.example.com/f?key=***",
        ),
    ]
    # Removed: no position (not listed), its row kept.
    write(config, config_text(source_list("a"), include=""))
    added, changed, removed = sync(config, store, 2)
    assert (added, changed, set(removed)) == ((), (), {"b", "c"})
    assert [row[:2] for row in listed(store)] == [("a", 0)]
    # A row an older version wrote (no overview columns; a removed one that kept its
    # position) is brought in line by the next sync.
    with store.transaction() as conn:
        t = sources_table.c
        conn.execute(
            sa.update(sources_table).where(t.name == "a").values(search=None, position=None)
        )
        conn.execute(sa.update(sources_table).where(t.name == "b").values(position=7))
    assert sync(config, store, 3) == ((), ("a",), ())
    assert [row[:2] for row in listed(store)] == [("a", 0)]


@pytest.mark.both_dialects
def test_removal_keeps_the_state_and_secrets_are_never_stored(tmp_path: Path, store: Store) -> None:
    from aggregator.store.records import SourceStateUpdate

    text = config_text(
        source_list("a") + "  username: reader\n  password: hunter2-secret\n", include=""
    )
    config = write(tmp_path / "config.yaml", text)
    sync(config, store)
    with store.transaction() as conn:
        store.save_state(conn, SourceStateUpdate(name="a", url="x", etag='"v1"', failures=2))
    row = store.source_settings("a")
    assert row is not None and row["settings"]["fetch_options"] == ["username", "password"]
    raw = stored_bytes(store)
    assert b"hunter2-secret" not in raw and b"reader" not in raw
    write(config, config_text(include=""))
    sync(config, store, 1)
    state = store.source_state("a")
    assert state is not None and state["etag"] == '"v1"' and state["failures"] == 2
    assert state["removed_at"] == FIXED_NOW + timedelta(minutes=1)


@pytest.mark.both_dialects
def test_sync_of_many_sources_is_one_transaction(tmp_path: Path, store: Store) -> None:
    names = [f"s{n:05d}" for n in range(12000)]  # more than one batch of statements
    config = write(tmp_path / "config.yaml", config_text(source_list(*names), include=""))
    assert len(sync(config, store)[0]) == 12000
    assert store.count_sources() == 12000
    write(config, config_text(source_list(*names[:-1]), include=""))
    assert sync(config, store, 1) == ((), (), (names[-1],))


# -- the service ---------------------------------------------------------------------------


def service_for(path: Path, made: list[Service]) -> Service:
    return open_service(path, made, lambda: FIXED_NOW)


def touch_later(path: Path) -> None:
    """Move a file's time on: two writes within the file system's clock tick look alike."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.both_dialects
def test_reload_notices_changes_of_included_files(
    tmp_path: Path, services: list[Service], database: str
) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("own"), database=database))
    news = write(tmp_path / "sources.d" / "news.yaml", source_list("n1"))
    service = service_for(config, services)
    service.start(paused=True)
    assert service.store.source_keys() == ["n1", "own"]  # synced at start
    assert service.next_run("n1") is not None

    service.check_config()  # nothing changed
    assert service.config.source("n2") is None
    write(news, source_list("n1", "n2"))
    touch_later(news)
    service.check_config()
    assert service.config.source("n2") is not None
    assert service.next_run("n2") is not None
    assert service.store.source_keys() == ["n1", "n2", "own"]

    extra = write(tmp_path / "sources.d" / "extra.yaml", source_list("x1"))  # a new file
    service.check_config()
    assert service.config.source("x1") is not None
    extra.unlink()  # and gone again
    service.check_config()
    assert service.config.source("x1") is None
    assert service.next_run("x1") is None
    assert service.store.source_keys(removed=True) == ["x1"]


def test_a_bad_included_file_is_refused_on_reload(tmp_path: Path, services: list[Service]) -> None:
    config = write(tmp_path / "config.yaml", config_text(source_list("own")))
    news = write(tmp_path / "sources.d" / "news.yaml", source_list("n1"))
    service = service_for(config, services)
    service.start(paused=True)
    write(news, source_list("n1") + "- url: https://y.example.com/\n  categories: []\n")
    touch_later(news)
    service.check_config()
    assert service.last_reload_error is not None
    assert f"{news}:4: [1].categories:" in service.last_reload_error
    assert service.config.source("n1") is not None  # the old config keeps running
