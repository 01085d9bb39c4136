"""Republished feeds: every route and format, filters, HTTP semantics, cache, validity."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import pytest
import sqlalchemy as sa
import yaml
from conftest import EXAMPLES, MakeConfig, ManualClock, item, rss, write_config
from feedcheck import check
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import TestResponse

from aggregator.config import load_config
from aggregator.content.convert import entry_uid
from aggregator.content.publish import FeedMeta, entry_id, render
from aggregator.content.selection import Selection, category_selection
from aggregator.models import PublishedEntry
from aggregator.poll.pipeline import Poller
from aggregator.store import Store
from aggregator.store.records import EntryRow, FeedVersion
from aggregator.web import create_app
from aggregator.web.state import app_state

SINA = ["金融", "新浪财经", "新浪财经－国內"]
OUTPUTS = [
    {"name": "python", "title": "Python posts", "tags": ["python"]},
    {
        "name": "cn-no-zhu",
        "categories": [["金融"], "新闻/示例日报"],
        "rules": [{"block": "朱镕基", "field": "title"}],
    },
    {"name": "中文", "sources": ["要闻"], "description": "一个输出"},
]


class Site:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.clock = ManualClock(datetime.now(UTC))  # the entries' first-seen times are real
        # Its changes are dated by the clock too: Last-Modified is the newest one's time.
        self.store = Store(
            self.config.settings.database, self.config.settings.posts_dir, clock=self.clock.now
        )
        self.poller = Poller(self.config, self.store, workers=1)
        self.app = create_app(self.config, self.store, clock=self.clock)
        self.client: FlaskClient = self.app.test_client()

    def poll(self) -> None:
        outcomes = self.poller.poll_sources(self.config.sources)
        assert all(o.ok for o in outcomes), outcomes

    def close(self) -> None:
        self.poller.close()
        self.store.close()


def build_site(folder: Path, database: str | None = None) -> Site:
    """Four sources (two bundled examples, two feeds of ``folder``), outputs, one poll;
    its index ``database`` (default: a SQLite file in ``folder``)."""
    feeds = folder / "feeds"
    feeds.mkdir()
    shutil.copy(EXAMPLES / "sina-finance-china.rss.xml", feeds / "sina.xml")
    (feeds / "misc.xml").write_text(
        rss(
            item(
                "m1",
                "Misc &#8232;post",
                "<p>Tab\there and a form feed</p>",
                link="https://misc.example/1",
            )
        ),
        encoding="utf-8",
    )
    path = write_config(
        folder,
        [
            {
                "url": str(feeds / "sina.xml"),
                "categories": SINA,
                "remove": [".appendQr_wrap", ".ori_titlesource", ".article-editor"],
            },
            {
                "url": str(EXAMPLES / "example-daily-gbk.rss.xml"),
                "categories": ["新闻", "示例日报", "要闻"],
            },
            {
                "url": str(EXAMPLES / "example-blog.atom.xml"),
                "categories": ["Tech", "Example Blog", "Engineering"],
                "name": "example-blog",
            },
            {
                "url": str(feeds / "misc.xml"),
                "categories": ["Tech", "Example Blog", "Misc"],
                "name": "misc",
            },
        ],
        publish={"max_age": 120, "default_limit": 10, "max_limit": 20, "cache_entries": 3},
        **({"database": database} if database else {}),
    )
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["outputs"] = OUTPUTS
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    s = Site(path)
    s.poll()
    return s


@pytest.fixture(scope="module")
def module_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = build_site(tmp_path_factory.mktemp("site"))
    yield s
    s.close()


@pytest.fixture
def site(
    request: pytest.FixtureRequest, tmp_path: Path, dialect: str, database: str
) -> Iterator[Site]:
    """The polled site: a test marked ``shared_site`` only reads it and shares one (polling
    takes most of such a test's time); any other test (it changes the feeds, the store or
    the cache, or counts cache hits) gets a site of its own in tmp_path, on the test's
    database."""
    if request.node.get_closest_marker("shared_site"):
        yield request.getfixturevalue("module_site")
        return
    s = build_site(tmp_path, database if dialect != "sqlite" else None)
    yield s
    s.close()


def all_feed_paths(site: Site) -> list[str]:
    paths = ["feeds/all"]
    paths += ["feeds/" + "/".join(levels) for levels in sorted(site.config.categories())]
    paths += ["outputs/" + o.name for o in site.config.outputs]
    return paths


def get(site: Site, path: str, **headers: str) -> TestResponse:
    return site.client.get("/" + quote(path), headers=headers)


@pytest.mark.shared_site
@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_every_level_and_output_is_served_valid(site: Site, kind: str) -> None:
    paths = all_feed_paths(site)
    assert len(paths) == 1 + 10 + 3  # all, ten levels of the tree, three outputs
    for path in paths:
        response = get(site, f"{path}.{kind}")
        assert response.status_code == 200, path
        expected_type = {
            "rss": "application/rss+xml",
            "atom": "application/atom+xml",
            "json": "application/feed+json",
        }[kind]
        assert response.headers["Content-Type"] == f"{expected_type}; charset=utf-8"
        self_url = "http://localhost/" + quote(f"{path}.{kind}")
        assert check(kind, response.data, self_url) == [], path
        if kind != "json":
            parsed = feedparser.parse(response.data)
            assert parsed.bozo == 0
            assert parsed.entries, path


@pytest.mark.shared_site
def test_levels_select_the_right_entries(site: Site) -> None:
    def titles(path: str) -> set[str]:
        return {e.title for e in feedparser.parse(get(site, path).data).entries}

    sina = "政企合作促数字化转型 上海虹口区首推转型创新基地"
    assert titles("feeds/金融.rss") == {sina}
    assert titles("feeds/金融/新浪财经/新浪财经－国內.rss") == {sina}
    assert len(titles("feeds/all.rss")) == 6
    tech = titles("feeds/Tech/Example Blog.rss")
    assert len(tech) == 3
    assert titles("feeds/Tech/Example Blog/Misc.rss") <= tech
    assert titles("outputs/python.rss") == {'Parsing feeds: fast & "safe" — part 1'}
    assert titles("outputs/cn-no-zhu.rss") == {sina, "第二条：没有图片的短讯"}
    assert len(titles("outputs/中文.rss")) == 2


@pytest.mark.shared_site
def test_unknown_feeds_are_404(site: Site) -> None:
    for path in (
        "feeds/nope.rss",
        "feeds/金融/nope.rss",
        "feeds/all.xml",
        "feeds/all",
        "outputs/nope.json",
        "feeds/金融/新浪财经/新浪财经－国內/extra.rss",
        "feeds/.rss",
    ):
        assert get(site, path).status_code == 404, path


@pytest.mark.shared_site
def test_cjk_names_percent_encoded(site: Site) -> None:
    url = "/feeds/%E6%96%B0%E9%97%BB/%E7%A4%BA%E4%BE%8B%E6%97%A5%E6%8A%A5.atom"
    response = site.client.get(url)
    assert response.status_code == 200
    parsed = feedparser.parse(response.data)
    assert parsed.feed.title == "aggregator: 新闻 › 示例日报"
    assert any("朱镕基" in e.title for e in parsed.entries)


@pytest.mark.shared_site
def test_same_entry_has_one_id_everywhere(site: Site) -> None:
    ids = set()
    for path in (
        "feeds/all",
        "feeds/金融",
        "feeds/金融/新浪财经/新浪财经－国內",
        "outputs/cn-no-zhu",
    ):
        for kind in ("rss", "atom"):
            parsed = feedparser.parse(get(site, f"{path}.{kind}").data)
            ids |= {e.id for e in parsed.entries if e.title.startswith("政企合作")}
        document = json.loads(get(site, f"{path}.json").data)
        ids |= {i["id"] for i in document["items"] if i["title"].startswith("政企合作")}
    [stored] = [r for r in site.store.entries() if r["title"].startswith("政企合作")]
    assert ids == {entry_id(stored["uid"])}


@pytest.mark.shared_site
def test_items_carry_body_summary_author_categories_image_link_dates(site: Site) -> None:
    path = "feeds/Tech/Example Blog/Engineering"
    root = etree.fromstring(get(site, f"{path}.rss").data)
    ns = {
        "content": "http://purl.org/rss/1.0/modules/content/",
        "dc": "http://purl.org/dc/elements/1.1/",
        "media": "http://search.yahoo.com/mrss/",
    }
    [post] = [i for i in root.iter("item") if i.findtext("title", "").startswith("Parsing")]
    assert "<strong>messy</strong>" in post.findtext("content:encoded", "", ns)
    assert post.findtext("description", "").startswith("Feeds are messy.")
    # The entry's own author; the site for an entry whose feed names none.
    assert post.findtext("dc:creator", "", ns) == "Ada"
    [bare] = [i for i in root.iter("item") if i.findtext("title", "").startswith("A post")]
    assert bare.findtext("dc:creator", "", ns) == "Example Blog"
    thumbnail = post.find("media:thumbnail", ns)
    assert thumbnail is not None
    assert thumbnail.get("url") == "https://blog.example.org/images/cover-1.png"
    assert post.findtext("link") == "https://blog.example.org/posts/parsing-feeds-1/"
    assert post.findtext("pubDate") == "Sat, 01 Jun 2024 07:00:00 +0000"
    assert {c.text for c in post.findall("category")} >= {"Tech", "python", "feeds"}
    atom = feedparser.parse(get(site, f"{path}.atom").data)
    [entry] = [e for e in atom.entries if e.title.startswith("Parsing")]
    assert entry.published == "2024-06-01T07:00:00+00:00"
    assert entry.updated == "2024-06-02T12:00:00+00:00"
    assert entry.content[0].type == "text/html"
    document = json.loads(get(site, f"{path}.json").data)
    [data] = [i for i in document["items"] if i["title"].startswith("Parsing")]
    assert data["image"] == "https://blog.example.org/images/cover-1.png"
    assert data["date_published"] == "2024-06-01T07:00:00Z"
    assert data["date_modified"] == "2024-06-02T12:00:00Z"
    assert data["url"] == "https://blog.example.org/posts/parsing-feeds-1/"
    assert document["home_page_url"] == "http://localhost/"


@pytest.mark.shared_site
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=镕", {"朱镕基与陶喆：“全角”标点，和 'quotes' 都要保留"}),
        ("q=ＰＡＲＳＩＮＧ", {'Parsing feeds: fast & "safe" — part 1'}),  # full-width, any case
        ("q=数字化转型", {"政企合作促数字化转型 上海虹口区首推转型创新基地"}),  # in the body
        # ?author= is the byline: the entry's own author, else the site.
        ("exclude=post&author=ada", {'Parsing feeds: fast & "safe" — part 1'}),
        ("author=example", {"A post with no date and a plain-text body", "Misc \u2028post"}),
        (
            "author=示例日报",
            {"朱镕基与陶喆：“全角”标点，和 'quotes' 都要保留", "第二条：没有图片的短讯"},
        ),
        ("since=2024-05-02&q=第二条", {"第二条：没有图片的短讯"}),
        ("since=2024-05-02T00:00:00%2B08:00&author=示例", {"第二条：没有图片的短讯"}),
        ("since=2030-01-01", set()),
    ],
)
def test_query_parameters(site: Site, query: str, expected: set[str]) -> None:
    response = site.client.get(f"/feeds/all.json?{query}")
    assert response.status_code == 200
    assert {i["title"] for i in json.loads(response.data)["items"]} == expected


@pytest.mark.shared_site
def test_limit(site: Site) -> None:
    assert len(json.loads(get(site, "feeds/all.json").data)["items"]) == 6
    assert len(json.loads(site.client.get("/feeds/all.json?limit=2").data)["items"]) == 2


@pytest.mark.shared_site
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 20"),
        ("limit=21", "limit must be a whole number from 1 to 20"),
        ("limit=ten", "limit must be a whole number from 1 to 20"),
        ("since=yesterday", "since must be an ISO 8601 date or time"),
        ("q=", "parameter 'q' is empty"),
        ("author=" + "x" * 201, "parameter 'author' is longer than 200 characters"),
        # Digits that str.isdigit() accepts and int() refuses, or reads as another number.
        ("limit=²", "limit must be a whole number from 1 to 20"),
        ("limit=%C2%B2", "limit must be a whole number from 1 to 20"),
        ("limit=１２", "limit must be a whole number from 1 to 20"),
        # Valid dates whose offset moves them out of datetime's range in UTC.
        ("since=0001-01-01T00:00:00%2B01:00", "since is out of range in UTC"),
        ("since=9999-12-31T23:59:59-01:00", "since is out of range in UTC"),
        # Control characters, raw or percent-encoded, in known and unknown parameters.
        ("q=a\x01b", "parameter 'q' contains a control character"),
        ("exclude=%00", "parameter 'exclude' contains a control character"),
        ("utm_source=\x01", "parameter 'utm_source' contains a control character"),
    ],
)
def test_bad_parameters_are_400(site: Site, query: str, message: str) -> None:
    response = site.client.get(f"/feeds/all.rss?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


@pytest.mark.shared_site
def test_validators_304_head_gzip_and_cache_control(site: Site) -> None:
    first = get(site, "feeds/all.atom")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert first.headers["Cache-Control"] == "public, max-age=120"
    assert first.headers["Vary"] == "Accept-Encoding"
    again = get(site, "feeds/all.atom", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    # The validators and caching headers only: no Content-Type of a body it has not.
    assert "Content-Type" not in again.headers and again.headers["Vary"] == "Accept-Encoding"
    assert get(site, "feeds/all.atom", **{"If-None-Match": '"other", ' + etag}).status_code == 304
    assert get(site, "feeds/all.atom", **{"If-None-Match": '"other"'}).status_code == 200
    assert get(site, "feeds/all.atom", **{"If-Modified-Since": modified}).status_code == 304
    assert (
        get(
            site, "feeds/all.atom", **{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
        ).status_code
        == 200
    )
    zipped = get(site, "feeds/all.atom", **{"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == first.data
    head = site.client.head("/feeds/all.atom")
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag


@pytest.mark.both_dialects
def test_cache_is_invalidated_when_entries_change_and_stays_bounded(
    site: Site, tmp_path: Path
) -> None:
    cache = app_state(site.app).cache
    first = get(site, "feeds/Tech.rss")
    assert get(site, "feeds/Tech.rss").headers["ETag"] == first.headers["ETag"]
    hits = cache.hits
    get(site, "feeds/Tech.rss")
    assert cache.hits == hits + 1  # served from the cache
    (tmp_path / "feeds" / "misc.xml").write_text(
        rss(item("m2", "Brand new", "<p>New</p>") + item("m1", "Misc post", "<p>x</p>")),
        encoding="utf-8",
    )
    site.poll()
    second = get(site, "feeds/Tech.rss")
    assert second.headers["ETag"] != first.headers["ETag"]
    assert "Brand new" in second.get_data(as_text=True)
    for n in range(1, 6):
        site.client.get(f"/feeds/all.rss?limit={n}")
    assert len(cache) == 3  # cache_entries: 3
    assert cache.bytes == sum(item.size for item in cache._items.values())


def test_invalid_xml_characters_never_reach_the_output() -> None:
    entry = PublishedEntry(
        uid="u1",
        source="s",
        title="bell\x07 vt\x0b nul\x00 ok\ufffe",
        link="https://e.example/1",
        author="a\x1fb",
        categories=("c\x0c",),
        tags=("t\x01",),
        headimg="",
        summary="s\x02",
        body_html="<p>b\x03</p>",
        published=datetime(2024, 1, 1, tzinfo=UTC),
        updated=None,
        date=datetime(2024, 1, 1, tzinfo=UTC),
    )
    meta = FeedMeta(
        "T\x08",
        "D",
        "https://x.example/f.rss",
        "https://x.example/",
        "k",
        datetime(2024, 1, 1, tzinfo=UTC),
    )
    for kind in ("rss", "atom", "json"):
        body = render(kind, meta, [entry])
        assert check(kind, body, "https://x.example/f.rss") == [], kind
        assert b"\x07" not in body and b"\x0b" not in body and b"\x00" not in body
    assert feedparser.parse(render("rss", meta, [entry])).entries[0].title == "bell vt nul ok"


def test_empty_category_feed_is_valid(site: Site, make_config: MakeConfig) -> None:
    site.store.close()
    empty = Site(site.config_path)
    try:
        # A fresh store in another folder: the categories exist, no entry yet.
        empty.store.close()
        empty.store = Store(
            str(Path(site.config.settings.database).parent / "other.sqlite"),
            site.config.settings.posts_dir,
        )
        empty.app = create_app(empty.config, empty.store)
        for kind in ("rss", "atom", "json"):
            response = empty.app.test_client().get(f"/feeds/all.{kind}")
            assert response.status_code == 200
            assert check(kind, response.data) == []
    finally:
        empty.close()


@pytest.mark.shared_site
def test_dashboard_has_autodiscovery_and_subscribe_links(site: Site) -> None:
    page = site.client.get("/").get_data(as_text=True)
    assert (
        '<link rel="alternate" type="application/rss+xml" title="All entries (RSS)" href="/feeds/all.rss">'
        in page
    )
    assert 'href="/feeds/%E9%87%91%E8%9E%8D.atom"' in page
    assert 'href="/outputs/python.json"' in page


def test_gzip_negotiation_and_its_own_etag(site: Site) -> None:
    plain = get(site, "feeds/all.rss")
    assert (
        "Content-Encoding"
        not in get(site, "feeds/all.rss", **{"Accept-Encoding": "gzip;q=0, br"}).headers
    )
    assert (
        get(site, "feeds/all.rss", **{"Accept-Encoding": "*"}).headers["Content-Encoding"] == "gzip"
    )
    zipped = get(site, "feeds/all.rss", **{"Accept-Encoding": "gzip"})
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    again = get(
        site,
        "feeds/all.rss",
        **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
    )
    assert again.status_code == 304


@pytest.mark.both_dialects
def test_last_modified_moves_when_a_backdated_entry_arrives(site: Site, tmp_path: Path) -> None:
    first = get(site, "feeds/Tech.rss")
    (tmp_path / "feeds" / "misc.xml").write_text(
        rss(
            item("old", "Backdated", "<p>x</p>", date="Mon, 01 Jan 2001 00:00:00 GMT")
            + item(
                "m1",
                "Misc &#8232;post",
                "<p>Tab\there and a form feed</p>",
                link="https://misc.example/1",
            )
        ),
        encoding="utf-8",
    )
    # A second after the first answer (Last-Modified has one-second resolution).
    site.clock.advance_to(
        parsedate_to_datetime(first.headers["Last-Modified"]) + timedelta(seconds=1)
    )
    site.poll()
    second = get(site, "feeds/Tech.rss", **{"If-Modified-Since": first.headers["Last-Modified"]})
    assert second.status_code == 200  # not a 304: the feed did change
    assert "Backdated" in second.get_data(as_text=True)


def test_cache_accounting_ignores_items_no_longer_cached() -> None:
    from aggregator.web.cache import FeedCache, Rendered

    cache = FeedCache(10, 10_000_000)
    first = Rendered(b"x" * 1000, "t", datetime.now(UTC), FeedVersion(1, None))
    cache.put(("k",), first)
    second = Rendered(b"y" * 1000, "t", datetime.now(UTC), FeedVersion(2, None))
    cache.put(("k",), second)  # replaced before the first was gzipped
    before = first.size
    first.gzipped()
    cache.grew(("k",), first, before)
    assert cache.bytes == second.size


def self_link(site: Site, url: str, **headers: str) -> str:
    response = site.client.get(url, headers=headers)
    assert response.status_code == 200
    link: str = json.loads(response.data)["feed_url"]
    return link


def test_self_links_come_from_the_parsed_query(site: Site) -> None:
    # The first request's unknown parameter must not stick to the cached feed.
    assert self_link(site, "/feeds/all.json?utm_source=x&limit=3") == (
        "http://localhost/feeds/all.json?limit=3"
    )
    assert self_link(site, "/feeds/all.json?limit=3") == "http://localhost/feeds/all.json?limit=3"
    assert self_link(site, "/feeds/all.json?limit=10&since=2024-05-02T08:00:00%2B08:00&q=镕") == (
        "http://localhost/feeds/all.json?q=%E9%95%95&since=2024-05-02T00%3A00%3A00Z"
    )  # the default limit is left out; since in UTC


def with_settings(site: Site, section: str, **values: Any) -> FlaskClient:
    """A client of an app over the same store whose settings.<section> has these values."""
    settings = site.config.settings
    changed = getattr(settings, section).model_copy(update=values)
    config = site.config.model_copy(
        update={"settings": settings.model_copy(update={section: changed})}
    )
    return create_app(config, site.store).test_client()


def test_random_host_headers_neither_churn_the_cache_nor_reach_self_links(site: Site) -> None:
    cache = app_state(site.app).cache
    assert self_link(site, "/feeds/all.json") == "http://localhost/feeds/all.json"
    fallback = "http://127.0.0.1/feeds/all.json"  # the server's own address
    assert self_link(site, "/feeds/all.json", Host="attacker.example") == fallback
    size, hits = len(cache), cache.hits
    for n in range(20):
        assert self_link(site, "/feeds/all.json", Host=f"attacker{n}.example") == fallback
    assert len(cache) == size
    assert cache.hits == hits + 20  # all served from the one cached document
    # A trusted name on a port the server does not listen on is not trusted.
    assert self_link(site, "/feeds/all.json", Host="localhost:1234") == fallback
    hits = cache.hits
    assert self_link(site, "/feeds/all.json") == "http://localhost/feeds/all.json"
    assert cache.hits == hits + 1  # the trusted host's document was not pushed out


@pytest.mark.shared_site
def test_trusted_hosts_and_base_url_decide_self_links(site: Site) -> None:
    client = with_settings(site, "server", trusted_hosts=("feeds.example.org",))
    response = client.get("/feeds/all.json", headers={"Host": "Feeds.Example.org"})
    assert json.loads(response.data)["feed_url"] == "http://feeds.example.org/feeds/all.json"
    response = client.get("/feeds/all.json", headers={"Host": "other.example"})
    assert json.loads(response.data)["feed_url"] == "http://127.0.0.1/feeds/all.json"
    client = with_settings(site, "server", host="0.0.0.0")  # listening on every address
    response = client.get("/feeds/all.json", headers={"Host": "other.example"})
    assert json.loads(response.data)["feed_url"] == "http://localhost/feeds/all.json"
    client = with_settings(site, "publish", base_url="https://news.example.net/agg/")
    response = client.get("/feeds/all.json", headers={"Host": "feeds.example.org"})
    assert json.loads(response.data)["feed_url"] == "https://news.example.net/agg/feeds/all.json"


def add_misc_entry(site: Site, tmp_path: Path) -> None:
    """A new entry in Tech › Example Blog › Misc only; the other feeds' files are as polled."""
    (tmp_path / "feeds" / "misc.xml").write_text(
        rss(
            item("m2", "Brand new", "<p>New</p>")
            + item(
                "m1",
                "Misc &#8232;post",
                "<p>Tab\there and a form feed</p>",
                link="https://misc.example/1",
            )
        ),
        encoding="utf-8",
    )
    site.clock.advance(5)
    site.poll()


@pytest.mark.both_dialects
def test_a_new_entry_invalidates_only_the_feeds_of_its_categories(
    site: Site, tmp_path: Path
) -> None:
    cache = app_state(site.app).cache
    tech, finance = get(site, "feeds/Tech.rss"), get(site, "feeds/金融.rss")
    everything = get(site, "feeds/all.rss")
    cached = {key[1]: item for key, item in cache._items.items()}
    add_misc_entry(site, tmp_path)
    hits = cache.hits
    finance_again = get(site, "feeds/金融.rss")
    assert cache.hits == hits + 1  # its rendered copy is still good
    assert {key[1]: item for key, item in cache._items.items()}["category:金融"] is cached[
        "category:金融"
    ]
    assert finance_again.headers["ETag"] == finance.headers["ETag"]
    assert finance_again.headers["Last-Modified"] == finance.headers["Last-Modified"]
    assert get(
        site, "feeds/金融.rss", **{"If-None-Match": finance.headers["ETag"]}
    ).status_code == (304)
    for before, path in ((tech, "feeds/Tech.rss"), (everything, "feeds/all.rss")):
        after = get(site, path)
        assert "Brand new" in after.get_data(as_text=True)
        assert after.headers["ETag"] != before.headers["ETag"]
        assert parsedate_to_datetime(after.headers["Last-Modified"]) > parsedate_to_datetime(
            before.headers["Last-Modified"]
        )
        assert get(site, path, **{"If-None-Match": before.headers["ETag"]}).status_code == 200


@pytest.mark.both_dialects
def test_two_apps_over_one_index_give_the_same_validators(site: Site, tmp_path: Path) -> None:
    # Another process: its own store on the same file, its own cache, another clock.
    other_store = Store(site.config.settings.database, site.config.settings.posts_dir)
    other_clock = ManualClock(site.clock.now() + timedelta(hours=3))
    other = create_app(site.config, other_store, clock=other_clock).test_client()
    try:
        paths = [p + ".rss" for p in all_feed_paths(site)] + ["feeds/Tech.atom?limit=1"]
        paths += ["feeds/Tech.json", "outputs/python.atom"]

        def validators(client: FlaskClient, path: str) -> tuple[str, str, bytes]:
            response = client.get("/" + quote(path, safe="/?="))
            assert response.status_code == 200, path
            return response.headers["ETag"], response.headers["Last-Modified"], response.data

        for path in paths:
            assert validators(site.client, path) == validators(other, path), path
        finance = validators(other, "feeds/金融.rss")
        add_misc_entry(site, tmp_path)
        other_clock.advance(1)  # the other process reads the versions again a second on
        for path in paths:
            assert validators(site.client, path) == validators(other, path), path
        assert validators(other, "feeds/金融.rss") == finance
        # A validator one process gave is good at the other.
        tech = site.client.get("/feeds/Tech.rss")
        for header, value in (
            ("If-None-Match", tech.headers["ETag"]),
            ("If-Modified-Since", tech.headers["Last-Modified"]),
        ):
            assert other.get("/feeds/Tech.rss", headers={header: value}).status_code == 304
    finally:
        other_store.close()


def entry_row(source: str, key: str, categories: tuple[str, ...], when: datetime) -> EntryRow:
    return EntryRow(
        source=source,
        key=key,
        alt_key=key + "#",
        uid=entry_uid(source, key),
        path=None,
        title=key,
        link=f"https://example.com/{key}",
        author=source,
        categories=categories,
        tags=(),
        headimg="",
        summary="",
        body_html="<p>x</p>",
        published=when,
        updated=None,
        date=when,
        first_seen=when,
        last_seen=when,
        raw_json="{}",
        raw_hash=key,
        file_hash=None,
        render_key="test",
    )


@pytest.mark.both_dialects
def test_a_feeds_version_moves_with_its_own_entries_only(tmp_path: Path, database: str) -> None:
    clock = ManualClock()
    store = Store(database, str(tmp_path / "posts"), clock=clock.now)
    a, b = ("A", "a1"), ("B",)
    feeds = {
        "A": Selection("category:A", "A", "", "/", categories=(("A",),)),
        "A/a1": Selection("category:A/a1", "A/a1", "", "/", categories=(a,)),
        "B": Selection("category:B", "B", "", "/", categories=(b,)),
        "source s2": Selection("output:s2", "s2", "", "/", sources=("s2",)),
        "all": Selection("all", "all", "", "/"),
    }

    def versions() -> dict[str, FeedVersion]:
        return {name: store.feed_version(s) for name, s in feeds.items()}

    def write(*rows: EntryRow) -> None:
        clock.advance(10)
        with store.transaction() as conn:
            store.upsert_entries(conn, rows)

    try:
        empty = versions()
        assert set(empty.values()) == {FeedVersion(0, None)}
        write(entry_row("s1", "k1", a, clock.now()), entry_row("s1", "k2", a, clock.now()))
        first = versions()
        assert first["A"] == first["A/a1"] == first["all"] == FeedVersion(1, clock.now())
        assert first["B"] == first["source s2"] == FeedVersion(0, None)
        write(entry_row("s2", "k3", b, clock.now()))  # a change elsewhere: A is as it was
        second = versions()
        assert second["A"] == first["A"] and second["A/a1"] == first["A/a1"]
        assert second["B"] == second["source s2"] == second["all"] == FeedVersion(2, clock.now())
        # One of A's entries moves to B: A changed although its newest row did not.
        write(entry_row("s1", "k1", b, clock.now()))
        moved = versions()
        assert moved["A"] == moved["A/a1"] == moved["B"] == FeedVersion(3, clock.now())
        assert moved["source s2"] == second["source s2"]
        # Retention prunes s1's entries (k2 in A, k1 now in B): both change, s2's not.
        clock.advance(10)
        with store.transaction() as conn:
            assert store.prune(conn, "s1", None, 0, clock.now()) == 2
        pruned = versions()
        assert pruned["A"] == pruned["B"] == pruned["all"] == FeedVersion(4, clock.now())
        assert pruned["source s2"] == second["source s2"]
        assert store.content_version() == 4
    finally:
        store.close()


@pytest.mark.both_dialects
def test_a_feed_version_is_looked_for_again_only_after_a_change(site: Site, tmp_path: Path) -> None:
    """While the store's change sequence stands, a feed's version is the one found last
    (the newest change among a large category's rows costs tens of milliseconds); after
    any change it is looked for again, and a change elsewhere leaves it as it was."""
    tech = category_selection(site.config, "Tech/Example Blog/Engineering")
    assert tech is not None
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    sa.event.listen(site.store.engine, "before_cursor_execute", note)
    try:
        first = site.store.feed_version(tech)
        statements.clear()
        assert site.store.feed_version(tech) == first
        assert statements and not any("entries" in s for s in statements)  # the meta row only
        add_misc_entry(site, tmp_path)  # a change in Tech › Example Blog › Misc
        statements.clear()
        assert site.store.feed_version(tech) == first
        assert any("entries" in s for s in statements)  # looked for again
        misc = category_selection(site.config, "Tech/Example Blog/Misc")
        assert misc is not None and site.store.feed_version(misc).seq > first.seq
    finally:
        sa.event.remove(site.store.engine, "before_cursor_execute", note)
