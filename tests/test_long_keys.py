"""Entries whose key (guid, else link) is longer than an index holds: PostgreSQL's B-tree
entries hold at most 2,704 bytes, and a 10 KB random guid made its source's polls fail.

Such a key is kept as its digest (``convert.bounded_key``), on both dialects; revision
0004 rewrites the long keys an earlier version stored, so that their entries keep their
identity. Polled from a real local HTTP server, into a SQLite and a PostgreSQL index.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from conftest import HarnessFactory, MakeConfig, force_render_key, item, rss
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.content.convert import entry_uid
from aggregator.store import migrate
from aggregator.store.copy import copy_index
from aggregator.store.schema import entries_table, pages_table

pytestmark = pytest.mark.both_dialects

#: Serve a feed document at a name; returns its URL (served again: the new document).
Serve = Callable[[str, str], str]


def noise(seed: int, length: int) -> str:
    """Letters and digits that no compressor shrinks to an index's size."""
    return "".join(random.Random(seed).choices(string.ascii_letters + string.digits, k=length))


LONG_GUID = "tag:example.com,2026:" + noise(1, 10_000)
LONG_LINK = "https://example.com/post/" + noise(2, 10_000)


def digest_of(key: str) -> str:
    """The stored form of a key over the bound, spelled out here as the revision does."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@pytest.fixture
def serve(httpserver: HTTPServer) -> Serve:
    documents: dict[str, str] = {}

    def put(name: str, document: str) -> str:
        if name not in documents:

            def respond(_request: Request) -> Response:
                return Response(documents[name], content_type="application/rss+xml")

            httpserver.expect_request(f"/{name}").respond_with_handler(respond)
        documents[name] = document
        return httpserver.url_for(f"/{name}")

    return put


def stored(database: str) -> list[tuple[str, str, str, str, str | None]]:
    """(source, key, alt_key, uid, link) of every entry row, in order."""
    e = entries_table
    engine = migrate.make_engine(database)
    try:
        with engine.connect() as conn:
            query = sa.select(e.c.source, e.c.key, e.c.alt_key, e.c.uid, e.c.link)
            return [tuple(r) for r in conn.execute(query.order_by(e.c.source, e.c.id))]
    finally:
        engine.dispose()


def test_a_long_random_guid_and_a_long_link_poll_and_are_stored_once(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve, database: str
) -> None:
    guid_feed = serve("guid", rss(item(LONG_GUID, "Long guid", link="https://example.com/g")))
    link_feed = serve("link", rss(item(None, "Long link", link=LONG_LINK)))
    h = harness(
        make_config(
            [
                {"url": guid_feed, "categories": ["A"], "name": "g"},
                {"url": link_feed, "categories": ["A"], "name": "l"},
            ]
        )
    )
    outcomes = h.poll()
    assert [(o.error, o.new) for o in outcomes] == [(None, 1), (None, 1)]
    rows = stored(database)
    assert [(source, key) for source, key, *_ in rows] == [
        ("g", digest_of(LONG_GUID)),
        ("l", digest_of(LONG_LINK)),
    ]
    assert all(alt.startswith(key + "#") and len(alt) == len(key) + 13 for _, key, alt, *_ in rows)
    assert rows[1][4] == LONG_LINK  # the link itself is kept whole
    # Polled again, parsed from scratch, and with a new entry beside it: no duplicate.
    h.now += timedelta(hours=1)
    serve("guid", rss(item(LONG_GUID, "Long guid", link="https://example.com/g") + item("n", "N")))
    serve("link", rss(item(None, "Long link", link=LONG_LINK) + item(None, "M", link="https://m")))
    force_render_key(h.poller, "again")
    outcomes = h.poll()
    assert [(o.error, o.new, o.unchanged) for o in outcomes] == [(None, 1, 1), (None, 1, 1)]
    assert [r for r in stored(database) if r[1].startswith("sha256:")] == rows
    assert h.store.count_entries("g") == h.store.count_entries("l") == 2
    assert len(h.files()) == 4


def test_long_keys_repeated_in_a_document_are_one_entry_or_kept_apart(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve, database: str
) -> None:
    """A repeat of one entry is one entry; one long guid given to different items (their
    titles and links differ) keeps them apart, under alt keys, as a short one does."""
    same = item(LONG_GUID, "Same", "<p>v1</p>", link="https://example.com/s")
    newer = item(LONG_GUID, "Same", "<p>v2</p>", link="https://example.com/s")
    constant = noise(3, 5_000)
    items = [item(constant, f"Item {n}", link=f"https://example.com/{n}") for n in (1, 2)]
    url = serve("f", rss(same + newer + "".join(items)))
    h = harness(make_config([{"url": url, "categories": ["A"], "name": "s"}]))
    [outcome] = h.poll()
    assert (outcome.error, outcome.new) == (None, 3)
    keys = [key for _, key, *_ in stored(database)]
    plain = digest_of(constant)
    assert keys[0] == digest_of(LONG_GUID)
    assert keys[1] == plain
    assert keys[2].startswith(plain + "#")
    # The first item leaves, a third comes: nobody changes identity.
    h.now += timedelta(hours=1)
    third = item(constant, "Item 3", link="https://example.com/3")
    serve("f", rss(newer + items[1] + third))
    [outcome] = h.poll()
    assert (outcome.error, outcome.new, outcome.unchanged) == (None, 1, 2)
    again = [key for _, key, *_ in stored(database)]
    assert again[:3] == keys
    assert again[3].startswith(plain + "#") and again[3] != keys[2]
    assert h.store.count_entries("s") == 4


def test_an_entry_with_a_long_key_is_dropped_and_pruned_for_good(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve
) -> None:
    dropped = item(LONG_GUID, "An advert", date="Mon, 01 Jan 2024 10:00:00 GMT")
    old = item(None, "Old", link=LONG_LINK, date="Tue, 02 Jan 2024 10:00:00 GMT")
    new = item(None, "New", link=LONG_LINK + "2", date="Wed, 03 Jan 2024 10:00:00 GMT")
    url = serve("f", rss(dropped + old + new))
    config = {"url": url, "categories": ["A"], "name": "s", "keep_max": 1}
    h = harness(make_config([{**config, "rules": [{"block": "advert"}]}]))
    [outcome] = h.poll()
    # "Old" is stored, then pruned (keep_max): new, and dropped, as the advert is.
    assert (outcome.error, outcome.new, outcome.dropped) == (None, 2, 2)
    assert [d["title"] for d in h.store.dropped("s")] == ["An advert"]
    assert [p.name for p in h.files()] == ["New.md"]
    h.now += timedelta(hours=1)
    force_render_key(h.poller, "again")
    [outcome] = h.poll()
    # The pruned one stays pruned, the dropped one dropped: nothing new.
    assert (outcome.error, outcome.new, outcome.unchanged) == (None, 0, 1)
    assert h.store.count_entries("s") == 1
    assert h.store.count_entries("s", pruned=True) == 1
    assert [p.name for p in h.files()] == ["New.md"]


# What an earlier version stored: the key whole. PostgreSQL held such a key only when it
# compressed to the index's size (random text never did), so these repeat themselves.
OLD_GUID = "tag:example.com,2026:" + "long/" * 800
OLD_LINK = "https://example.com/" + "path/" * 800
OLD_CONSTANT = "constant-" * 400


def before_long_keys() -> str:
    """The revision before the one that rewrites long keys (found by its file: it moves when revisions are renumbered)."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    [revision] = [r for r in script.walk_revisions() if r.path.endswith("_long_keys.py")]
    assert isinstance(revision.down_revision, str)
    return revision.down_revision


def test_revision_0004_rewrites_the_long_keys_an_earlier_version_stored(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve, database: str
) -> None:
    document = rss(
        item(OLD_GUID, "Guid")
        + item(None, "Link", link=OLD_LINK)
        + item(OLD_CONSTANT, "One", link="https://example.com/1")
        + item(OLD_CONSTANT, "Two", link="https://example.com/2")
        + item("short", "Short")
    )
    url = serve("f", document)
    h = harness(make_config([{"url": url, "categories": ["A"], "name": "s"}]))
    [outcome] = h.poll()
    assert (outcome.error, outcome.new) == (None, 5)
    files = {f: f.read_bytes() for f in h.files()}
    h.close()
    now = stored(database)
    longs = {digest_of(k): k for k in (OLD_GUID, OLD_LINK, OLD_CONSTANT)}
    # The index as the earlier version left it: the long keys whole (in keys, alt keys
    # and the pages table, one of whose rows has no entry), the ids made of them.
    engine = migrate.make_engine(database)
    old: list[tuple[str, str, str, str, str | None]] = []
    with engine.begin() as conn:
        for source, key, alt, uid, link in now:
            plain = alt[:-13]
            if plain in longs:
                under_alt = key == alt
                alt = longs[plain] + alt[-13:]
                key = alt if under_alt else longs[plain]
                page = {"source": "s", "key": key, "fetched_at": h.now, "error": "refused"}
                conn.execute(sa.insert(pages_table).values(page))
                was, uid = uid, entry_uid(source, key)
                row = entries_table.c.uid == was
                conn.execute(
                    sa.update(entries_table).where(row).values(key=key, alt_key=alt, uid=uid)
                )
            old.append((source, key, alt, uid, link))
        gone = {"source": "s", "key": "gone:" + OLD_LINK, "fetched_at": h.now, "error": "x"}
        conn.execute(sa.insert(pages_table).values(gone))
        before = before_long_keys()
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": before})
    assert stored(database) == old
    assert migrate.upgrade(engine) == migrate.Revisions(before, migrate.HEAD)
    with engine.connect() as conn:
        pages = sorted(conn.execute(sa.select(pages_table.c.key)).scalars())
    engine.dispose()
    # Each key and alt key as this version makes them; the ids, made of the old keys,
    # unchanged (they are in the files, the feeds, the readers' caches).
    assert stored(database) == [
        (source, key, alt, old_row[3], link)
        for (source, key, alt, _, link), old_row in zip(now, old, strict=True)
    ]
    assert pages == sorted(
        [key for _, key, *_ in now if key[:71] in longs] + [digest_of("gone:" + OLD_LINK)]
    )
    # The next poll (a new entry: the document is parsed) knows every entry.
    h.reload()
    h.now += timedelta(hours=1)
    serve("f", document.replace("</channel>", item("later", "Later") + "</channel>"))
    [outcome] = h.poll()
    assert (outcome.error, outcome.new, outcome.unchanged) == (None, 1, 5)
    assert h.store.count_entries("s") == 6
    assert {f: f.read_bytes() for f in h.files() if f in files} == files


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_a_sqlite_index_with_a_long_random_key_copies_to_postgresql(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve, database: str, postgres_url: str
) -> None:
    """Moving to PostgreSQL (``db copy``): the source is brought to head first, so a long
    key an earlier version stored in SQLite, which PostgreSQL never held, arrives short."""
    url = serve("f", rss(item(LONG_GUID, "Long guid")))
    h = harness(make_config([{"url": url, "categories": ["A"], "name": "s"}]))
    h.poll()
    h.close()
    [(_, key, alt, uid, _)] = stored(database)
    engine = migrate.make_engine(database)
    with engine.begin() as conn:
        old = {"key": LONG_GUID, "alt_key": LONG_GUID + alt[-13:]}
        conn.execute(sa.update(entries_table).values(old))
        version = {"v": before_long_keys()}
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), version)
    engine.dispose()
    assert copy_index(database, postgres_url)["entries"] == 1
    assert stored(postgres_url) == [("s", key, alt, uid, None)]


def cjk_noise(seed: int, length: int) -> str:
    """CJK characters (3 bytes each in UTF-8) in an order no compressor shrinks."""
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(length))


def test_a_category_path_at_the_configs_bound_polls(
    make_config: MakeConfig, harness: HarnessFactory, serve: Serve
) -> None:
    """The config refuses a category path over ``MAX_CATEGORY_BYTES``; one at the bound,
    random CJK in five levels, fits every index that holds it (PostgreSQL's included)."""
    levels = [cjk_noise(n, 66) for n in range(5)]  # 5 × 198 bytes and 4 separators
    assert sum(len(level.encode()) for level in levels) + 4 == 994
    url = serve("cjk", rss(item("c1", cjk_noise(9, 60)) + item("c2", cjk_noise(10, 60))))
    h = harness(make_config([{"url": url, "categories": levels, "name": "deep"}]))
    outcomes = h.poll()
    assert [(o.error, o.new) for o in outcomes] == [(None, 2)]
    assert h.store.count_entries("deep") == 2
    assert len(h.files()) == 2
