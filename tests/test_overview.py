"""The overview and /healthz with a few thousand sources: paging, filters, sorting and
counts done by the server, a small /healthz naming the ten worst sources.

The sources' states are written straight into a real index (as polls would leave them),
a SQLite file and a PostgreSQL schema in turn; what each page should list is worked out
here from the same plan, in Python.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import DIALECTS, write_config
from flask.testing import FlaskClient

from aggregator.config import load_config
from aggregator.models import Status
from aggregator.store import Store
from aggregator.store.records import SourceStateUpdate
from aggregator.web import create_app

COUNT = 2500
SECRET = "correct horse battery staple"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Planned:
    name: str
    url: str
    categories: tuple[str, str]
    enabled: bool
    status: str  # as the overview shows it
    failures: int
    last_ok_at: datetime | None
    title: str | None


def plan(i: int) -> Planned:
    """Source ``i``: a mix of every state, 40 top categories, a token in each URL."""
    kind = i % 10
    status = {0: "erroring", 1: "paused", 2: "gone", 9: "new"}.get(kind, "ok")
    enabled = i % 50 != 49
    failures = (i // 10) % 13 if status in ("erroring", "paused", "gone") else 0
    return Planned(
        name=f"s{i:04d}",
        url=f"https://host{i % 7}.example/feed{i}.xml?token=secret{i}",
        categories=(f"Cat{i % 40}", f"Sub{i % 3}"),
        enabled=enabled,
        status=status if enabled else "disabled",
        failures=failures,
        last_ok_at=None if i % 20 == 0 else NOW - timedelta(hours=i % 97),
        title="Needle Weekly" if i == 1234 else f"Feed {i}",
    )


PLANS = [plan(i) for i in range(COUNT)]


class Clock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture(scope="module", params=DIALECTS)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlaskClient]:
    """The app over the planned sources, on each database in turn."""
    folder = tmp_path_factory.mktemp("overview")
    if request.param == "sqlite":
        yield from serve(folder, "db/index.sqlite")
        return
    with request.getfixturevalue("postgres").schema() as url:
        yield from serve(folder, url)


def serve(folder: Path, database: str) -> Iterator[FlaskClient]:
    sources = [
        {"name": p.name, "url": p.url, "categories": list(p.categories), "enabled": p.enabled}
        for p in PLANS
    ]
    path = write_config(folder, sources, server={"admin_secret": SECRET}, database=database)
    config = load_config(path)
    store = Store(config.settings.database, config.settings.posts_dir)
    with store.transaction() as conn:
        for i, p in enumerate(PLANS):
            if p.status == "new" or (not p.enabled and i % 10 == 9):
                continue  # never polled: no state row
            recorded = {0: Status.ERRORING, 1: Status.PAUSED, 2: Status.GONE}.get(i % 10, Status.OK)
            store.save_state(
                conn,
                SourceStateUpdate(
                    name=p.name,
                    url=p.url,
                    title=p.title,
                    status=recorded,
                    failures=p.failures,
                    last_ok_at=p.last_ok_at,
                    last_polled_at=NOW - timedelta(minutes=i),
                    last_error=f"HTTP 500 from {p.url}" if recorded != Status.OK else None,
                ),
            )
        # A source since removed from the config keeps its row; it is counted nowhere.
        store.save_state(
            conn,
            SourceStateUpdate(
                name="removed", url="https://x.example/", status=Status.PAUSED, failures=999
            ),
        )
    app = create_app(config, store, clock=Clock())
    yield app.test_client()
    store.close()


def names(page: str) -> list[str]:
    """The sources listed in the table, in order."""
    return re.findall(r'<a href="/sources/(s\d{4})">', page)


def pager(page: str) -> str:
    """The sources' pager (the feed list has its own)."""
    found = re.search(r'<nav class="pager" id="source-pages".*?</nav>', page, re.S)
    return found.group(0) if found else ""


def get(client: FlaskClient, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    return answer.get_data(as_text=True)


def test_pages_one_two_and_the_last(client: FlaskClient) -> None:
    first = get(client, "/")
    assert names(first) == [f"s{i:04d}" for i in range(100)]
    assert "page 1 of 25" in first and 'href="/?page=2" rel="next"' in first
    assert 'rel="prev"' not in pager(first)
    assert "Sources 1–100 of 2500." in first
    second = get(client, "/?page=2")
    assert names(second) == [f"s{i:04d}" for i in range(100, 200)]
    assert 'href="/" rel="first"' in second and 'href="/?page=3" rel="next"' in second
    last = get(client, "/?page=25")
    assert names(last) == [f"s{i:04d}" for i in range(2400, 2500)]
    assert 'rel="next"' not in pager(last) and "page 25 of 25" in pager(last)
    assert names(get(client, "/?page=9999")) == names(last)  # past the end: the last page
    assert names(get(client, "/?page=nonsense")) == names(first)
    # The page stays small however many sources there are.
    assert len(first.encode()) < 100_000


def test_counts_by_state_total_and_matching(client: FlaskClient) -> None:
    page = get(client, "/")
    expected = Counter(p.status for p in PLANS)
    for state in ("new", "ok", "erroring", "paused", "gone", "disabled"):
        assert f'<option value="{state}">{state} ({expected[state]})</option>' in page
    assert f"<b>{COUNT}</b> sources" in page
    problems = expected["erroring"] + expected["paused"] + expected["gone"]
    assert f"<b>{problems}</b> need attention" in page  # not the removed source's row
    health = client.get("/healthz").get_json()
    assert health["sources"] == {s: expected[s] for s in health["sources"]}
    assert sum(health["sources"].values()) == COUNT


def test_filter_by_state(client: FlaskClient) -> None:
    paused = [p.name for p in PLANS if p.status == "paused"]
    page = get(client, "/?state=paused")
    assert names(page) == paused[:100]
    assert f"of {len(paused)} ({COUNT} in all)" in page
    assert set(re.findall(r'class="status status-(\w+)"', page)) == {"paused"}
    # The pager keeps the filter.
    assert 'href="/?state=paused&amp;page=2" rel="next"' in page
    assert names(get(client, "/?state=paused&page=2")) == paused[100:200]
    problems = [p.name for p in PLANS if p.status in ("erroring", "paused", "gone")]
    assert names(get(client, "/?state=problems")) == problems[:100]
    assert names(get(client, "/?state=new")) == [p.name for p in PLANS if p.status == "new"][:100]
    disabled = [p.name for p in PLANS if p.status == "disabled"]
    assert names(get(client, "/?state=disabled")) == disabled  # 50: one page
    assert client.get("/?state=bogus").status_code == 400


def test_filter_by_category_prefix(client: FlaskClient) -> None:
    top = [p.name for p in PLANS if p.categories[0] == "Cat7"]
    page = get(client, "/?category=Cat7")
    assert names(page) == top[:100] and f"of {len(top)} " in page
    deep = [p.name for p in PLANS if p.categories == ("Cat7", "Sub1")]
    assert names(get(client, "/?category=Cat7/Sub1")) == deep
    # A prefix of a name is not a parent category: Cat1 is not Cat10's parent.
    cat1 = [p.name for p in PLANS if p.categories[0] == "Cat1"]
    assert names(get(client, "/?category=Cat1")) == cat1
    both = [p.name for p in PLANS if p.categories[0] == "Cat7" and p.status == "ok"]
    assert names(get(client, "/?category=Cat7&state=ok")) == both


def test_search_name_title_and_redacted_url(client: FlaskClient) -> None:
    assert names(get(client, "/?q=needle")) == ["s1234"]  # the feed's title, any case
    assert names(get(client, "/?q=s0042")) == ["s0042"]
    host3 = [p.name for p in PLANS if "host3." in p.url]
    page = get(client, "/?q=host3.")
    assert names(page) == host3[:100] and f"of {len(host3)} " in page
    # A visitor searches what a visitor sees: the token is masked, so it finds nothing.
    nothing = get(client, "/?q=secret1234")
    assert names(nothing) == [] and "No source matches" in nothing
    assert "secret" not in get(client, "/?q=host3.")
    # Wildcards are text: "%" matches nothing here.
    assert names(get(client, "/?q=%25")) == []


def test_admin_searches_full_urls(client: FlaskClient) -> None:
    login = get(client, "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    client.post("/login", data={"secret": SECRET, "csrf": csrf.group(1)})
    try:
        page = get(client, "/?q=token%3Dsecret1234")
        assert names(page) == ["s1234"] and "token=secret1234" in page
    finally:
        page = get(client, "/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        client.post("/logout", data={"csrf": csrf.group(1)})
    assert names(get(client, "/?q=token%3Dsecret1234")) == []


def test_sorted_on_the_server(client: FlaskClient) -> None:
    worst = sorted((p for p in PLANS), key=lambda p: (-p.failures, PLANS.index(p)))
    assert names(get(client, "/?sort=-failures")) == [p.name for p in worst[:100]]
    by_name = get(client, "/?sort=name&page=2")
    assert names(by_name) == sorted(p.name for p in PLANS)[100:200]
    # Newest poll first is the reverse of config order here (polled i minutes ago);
    # sources never polled come last.
    polled = [p.name for i, p in enumerate(PLANS) if i % 10 != 9]  # the rest have no row
    assert names(get(client, "/?sort=-last_poll")) == polled[:100]
    assert client.get("/?sort=bogus").status_code == 400


def test_feed_list_paged_and_searched(client: FlaskClient) -> None:
    page = get(client, "/")
    # All, 40 top categories and their 120 subcategories: 161 feeds, 50 a page.
    assert "161 feeds." in page and page.count('class="copy"') == 50
    assert 'href="/?feeds_page=2" rel="next"' in page
    last = get(client, "/?feeds_page=4")
    assert len(re.findall(r'class="copy" data-url="', last)) == 11
    found = get(client, "/?q=Cat17")
    assert "4 feeds matching" in found
    assert re.findall(r'data-url="(/feeds/[^"]+)\.rss"', found) == [
        "/feeds/Cat17",
        "/feeds/Cat17/Sub0",
        "/feeds/Cat17/Sub1",
        "/feeds/Cat17/Sub2",
    ]
    # Each category feed links to its sources on the overview.
    assert 'href="/?q=Cat17&amp;category=Cat17/Sub1"' in found


def test_search_is_a_get_form(client: FlaskClient) -> None:
    """No script needed: the box is a GET form's ``q``, the server filters."""
    page = get(client, "/")
    form = re.search(r'<form class="filters" id="source-filters" method="get" action="/"', page)
    assert form is not None and 'name="q"' in page and 'name="state"' in page


def test_healthz_is_small_and_names_the_worst_ten(client: FlaskClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200  # sources failing: degraded, the service is fine
    body = answer.get_json()
    assert body["status"] == "degraded" and len(answer.get_data()) < 4000
    bad = [p for p in PLANS if p.status in ("erroring", "paused", "gone")]
    never = datetime.min.replace(tzinfo=UTC)
    ranked = sorted(
        bad,
        key=lambda p: (
            -p.failures,
            p.last_ok_at is not None,
            p.last_ok_at or never,
            PLANS.index(p),
        ),
    )
    assert [r.split(":")[0] for r in body["reasons"][:10]] == [p.name for p in ranked[:10]]
    assert body["reasons"][10] == f"and {len(bad) - 10} more sources erroring, paused or gone"
    assert len(body["reasons"]) == 11
    assert "secret" not in answer.get_data(as_text=True)  # error texts redacted


STATE_ORDER = sorted(("new", "ok", "erroring", "paused", "gone", "disabled"))


def test_sorted_by_state_both_ways(client: FlaskClient) -> None:
    """Each state's group in turn (by name), in config order inside it; a page that
    straddles two groups takes the end of one and the start of the next."""
    ranked = sorted(PLANS, key=lambda p: (STATE_ORDER.index(p.status), PLANS.index(p)))
    for page in (1, 2, 3, 25):
        listed = names(get(client, f"/?sort=state&page={page}"))
        assert listed == [p.name for p in ranked[(page - 1) * 100 : page * 100]]
    backwards = sorted(PLANS, key=lambda p: (-STATE_ORDER.index(p.status), PLANS.index(p)))
    assert names(get(client, "/?sort=-state&page=7")) == [p.name for p in backwards[600:700]]


def test_ascending_failures_is_the_reverse_of_descending(client: FlaskClient) -> None:
    worst = sorted(PLANS, key=lambda p: (-p.failures, PLANS.index(p)))
    assert names(get(client, "/?sort=failures")) == [p.name for p in worst[::-1][:100]]
    assert names(get(client, "/?sort=-failures&page=12")) == [p.name for p in worst[1100:1200]]


@pytest.mark.parametrize(
    ("query", "keep", "key"),
    [
        # A filter matching many (a tenth, a seventh): paged along the order's index.
        ("state=paused&sort=-failures", lambda p: p.status == "paused", "-failures"),
        ("q=host3.&sort=name", lambda p: "host3." in p.url, "name"),
        ("q=host3.&sort=-failures&page=2", lambda p: "host3." in p.url, "-failures"),
        # Matching few (a fiftieth, one in 120): found first, then sorted.
        ("state=disabled&sort=-failures", lambda p: p.status == "disabled", "-failures"),
        ("category=Cat7/Sub1&sort=state", lambda p: p.categories == ("Cat7", "Sub1"), "state"),
        ("q=cat7+›+sub1&sort=-name", lambda p: p.categories == ("Cat7", "Sub1"), "-name"),
        ("q=cat7+›+sub1&sort=-config", lambda p: p.categories == ("Cat7", "Sub1"), "-config"),
    ],
)
def test_filtered_and_sorted_whatever_the_plan(
    client: FlaskClient, query: str, keep: Any, key: str
) -> None:
    """Dense and sparse filters take different plans (``overview._page_names``); each
    lists what the same filter and sort give here, in Python."""
    kept = [p for p in PLANS if keep(p)]
    orders = {
        "-failures": lambda p: (-p.failures, PLANS.index(p)),
        "name": lambda p: p.name,
        "-name": lambda p: tuple(-ord(ch) for ch in p.name),
        "state": lambda p: (STATE_ORDER.index(p.status), PLANS.index(p)),
        "-config": lambda p: -PLANS.index(p),
    }
    ranked = [p.name for p in sorted(kept, key=orders[key])]
    page = int(query.partition("page=")[2] or 1)
    body = get(client, "/?" + query)
    assert names(body) == ranked[(page - 1) * 100 : page * 100]
    assert f"of {len(kept)} ({COUNT} in all)" in body


def test_statements_say_where_nulls_go_for_postgresql() -> None:
    """PostgreSQL sorts NULL last in ascending order and first in descending, SQLite
    the other way: the statements say it, and compile for both."""
    from sqlalchemy.dialects import postgresql, sqlite

    from aggregator.store.overview import Filters, _order, worst_query

    dialects = (postgresql.dialect(), sqlite.dialect())  # type: ignore[no-untyped-call]
    for dialect in dialects:
        worst = str(worst_query().compile(dialect=dialect))
        assert "last_ok_at ASC NULLS FIRST" in worst
        for descending in (False, True):
            order = _order(Filters(sort="last_poll", descending=descending))
            text = ", ".join(str(o.compile(dialect=dialect)) for o in order)
            assert "last_polled_at" in text and "NULLS LAST" in text
