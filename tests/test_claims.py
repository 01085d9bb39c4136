"""The claim loop (issue 13): leases, per-host caps, row-driven refresh/pause/resume and
lateness — on real SQLite files and a local HTTP server, with a hand-moved clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, Gate, MakeConfig, ManualClock, item, open_service, rss, wait_for
from pytest_httpserver import HTTPServer
from werkzeug import Response

from aggregator.config import load_config
from aggregator.models import Status
from aggregator.poll.batch import Parsed, Polled
from aggregator.poll.scheduler import Service
from aggregator.store import Store, claims
from aggregator.store.schema import claims_table, polls_table, sources_table
from aggregator.web import create_app

LEASE = timedelta(seconds=60)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for store in made:
        store.close()


def open_store(tmp_path: Path, made: list[Store]) -> Store:
    store = Store(str(tmp_path / "index.sqlite"), str(tmp_path / "posts"))
    made.append(store)
    return store


def add_sources(store: Store, urls: dict[str, str], when: datetime = FIXED_NOW) -> None:
    with store.transaction() as conn:
        claims.add_missing(conn, {name: (url, when) for name, url in urls.items()})


def claim(store: Store, now: datetime, limit: int = 100, per_host: int = 100) -> list[claims.Claim]:
    with store.transaction() as conn:
        return claims.claim(conn, now, limit=limit, per_host=per_host, lease=LEASE)


def row(store: Store, name: str) -> sa.Row[tuple[object, ...]]:
    t = sources_table
    with store.reading() as conn:
        found = conn.execute(sa.select(t).where(t.c.name == name)).first()
    assert found is not None
    return found


def test_two_claimers_on_one_index_never_share_a_source(
    tmp_path: Path, stores: list[Store]
) -> None:
    first, second = open_store(tmp_path, stores), open_store(tmp_path, stores)
    names = [f"s{n:03}" for n in range(200)]
    add_sources(first, {n: f"http://h{n}.example/feed" for n in names})
    taken: dict[str, list[str]] = {"first": [], "second": []}
    start = threading.Barrier(2)

    def claimer(store: Store, into: list[str]) -> None:
        start.wait()
        while got := claim(store, FIXED_NOW, limit=7):
            into.extend(c.name for c in got)

    threads = [
        threading.Thread(target=claimer, args=(first, taken["first"])),
        threading.Thread(target=claimer, args=(second, taken["second"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = taken["first"] + taken["second"]
    assert sorted(everything) == names  # each exactly once, none left behind
    assert not claim(second, FIXED_NOW + LEASE / 2)  # every lease still holds


def test_claims_come_in_next_poll_order_and_not_before_their_time(
    tmp_path: Path, stores: list[Store]
) -> None:
    store = open_store(tmp_path, stores)
    for n, name in enumerate(["late", "early", "future"]):
        add_sources(store, {name: f"http://{name}.example/"}, FIXED_NOW + timedelta(seconds=n))
    with store.transaction() as conn:
        claims.set_next(conn, {"early": FIXED_NOW - timedelta(seconds=5)})
        claims.set_next(conn, {"future": FIXED_NOW + timedelta(hours=1)})
    got = claim(store, FIXED_NOW + timedelta(seconds=1), limit=1)
    assert [(c.name, c.late) for c in got] == [("early", 6.0)]
    assert [c.name for c in claim(store, FIXED_NOW + timedelta(seconds=1))] == ["late"]


def test_an_expired_lease_comes_back_and_its_late_completion_is_refused(
    tmp_path: Path, stores: list[Store]
) -> None:
    store = open_store(tmp_path, stores)
    add_sources(store, {"a": "http://a.example/"})
    [crashed] = claim(store, FIXED_NOW)
    assert not claim(store, FIXED_NOW + LEASE - timedelta(seconds=1))
    [again] = claim(store, FIXED_NOW + LEASE)  # the lease ended: the source is back
    assert again.name == "a" and again.token != crashed.token
    with store.transaction() as conn:
        assert not claims.release(conn, "a", crashed.token)  # too late: not its lease
    assert row(store, "a").lease_token == again.token
    with store.transaction() as conn:
        assert claims.release(conn, "a", again.token)
    assert row(store, "a").lease_token is None


def test_the_per_host_cap_applies_at_claim_time_across_claims(
    tmp_path: Path, stores: list[Store]
) -> None:
    store = open_store(tmp_path, stores)
    add_sources(store, {f"a{n}": f"http://A.example/feed{n}" for n in range(5)})
    add_sources(store, {f"b{n}": f"https://b.example:8443/{n}" for n in range(3)})
    first = claim(store, FIXED_NOW, per_host=2)
    assert sorted(c.name for c in first) == ["a0", "a1", "b0", "b1"]
    assert not claim(store, FIXED_NOW, per_host=2)  # both hosts at their cap
    with store.transaction() as conn:
        claims.release(conn, "a0", first[0].token)  # polled: its next time is later
        claims.set_next(conn, {"a0": FIXED_NOW + timedelta(seconds=600)})
    assert [c.name for c in claim(store, FIXED_NOW, per_host=2)] == ["a2"]


# -- the service: real polls of a local server ------------------------------------------


@pytest.fixture
def feeds(served_feeds: list[str]) -> list[str]:
    return served_feeds


def make_service(
    make_config: MakeConfig,
    urls: list[str],
    clock: ManualClock,
    made: list[Service],
    concurrency: int = 100,
) -> Service:
    schedule = {"jitter": 0, "interval": 600, "startup_spread": 0, "per_host": 3}
    path = make_config(
        [{"url": u, "categories": ["A"], "name": f"s{n}"} for n, u in enumerate(urls)],
        schedule=schedule | {"concurrency": concurrency},
        workers=1,
    )
    return open_service(path, made, clock.now)


def started_service(
    make_config: MakeConfig, urls: list[str], made: list[Service]
) -> tuple[ManualClock, Service]:
    """A service over ``urls`` on a clock of its own, its rows set, its loop not running
    (the tests claim themselves)."""
    clock = ManualClock()
    service = make_service(make_config, urls, clock, made)
    service.start(paused=True)
    return clock, service


def settle(service: Service) -> None:
    wait_for(lambda: service._in_flight == 0, "the claimed polls to be recorded")


def test_never_polled_sources_are_claimed_polled_and_rescheduled(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock = ManualClock()
    service = make_service(make_config, feeds, clock, services)
    service.start(paused=True)  # the tick is the test's
    assert {service.next_run(f"s{n}") for n in range(3)} == {FIXED_NOW}  # rows made at start
    assert sorted(c.name for c in service.claim_due()) == ["s0", "s1", "s2"]
    settle(service)
    for n in range(3):
        assert service.next_run(f"s{n}") == FIXED_NOW + timedelta(seconds=600)
        assert row(service.store, f"s{n}").lease_token is None  # the record ended the claim
    assert not service.claim_due()  # nothing due until the interval has passed
    clock.advance(600)
    assert len(service.claim_due()) == 3
    settle(service)


def test_pause_refresh_and_resume_are_row_updates_the_loop_honours(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock, service = started_service(make_config, feeds[:1], services)
    service.store.set_status("s0", feeds[0], Status.PAUSED.value, "paused by the admin")
    clock.advance(3600)
    assert service.next_run("s0") is None and not service.claim_due()
    assert service.refresh("s0")  # polled once, although paused
    assert service.next_run("s0") == clock.now()
    [refreshed] = service.claim_due()
    assert refreshed.manual
    settle(service)
    assert row(service.store, "s0").wake is None  # the refresh is used up
    service.store.set_status("s0", feeds[0], Status.PAUSED.value, "paused again")
    clock.advance(3600)
    assert not service.claim_due()
    service.store.set_status("s0", feeds[0], Status.OK.value, None)  # the admin's resume
    assert service.refresh("s0")
    assert [c.name for c in service.claim_due()] == ["s0"]
    settle(service)
    assert service.next_run("s0") == clock.now() + timedelta(seconds=600)


def test_a_late_completion_records_its_history_but_not_its_state(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock, service = started_service(make_config, feeds[:1], services)
    with service.store.transaction() as conn:
        [stale] = claims.claim(conn, clock.now(), limit=1, per_host=2, lease=LEASE)
        clock.advance(LEASE.total_seconds())
        [fresh] = claims.claim(conn, clock.now(), limit=1, per_host=2, lease=LEASE)
    source = service.config.source("s0")
    assert source is not None
    outcome = service.poller.poll_source(source, manual=False, lease=stale.token)
    assert outcome.ok and outcome.new == 1
    after = row(service.store, "s0")
    assert after.lease_token == fresh.token  # the newer claim still holds it
    assert after.last_polled_at is None and after.next_poll_at == FIXED_NOW  # state untouched
    with service.store.reading() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(polls_table)).scalar() == 1


def test_lateness_is_recorded_and_shown(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock, service = started_service(make_config, feeds, services)
    clock.advance(30)  # every source was due at FIXED_NOW: claimed 30 s late
    assert [c.late for c in service.claim_due()] == [30.0, 30.0, 30.0]
    settle(service)
    clock.advance(600)  # due at FIXED_NOW + 630 after their polls: on time now
    assert [c.late for c in service.claim_due()] == [0.0, 0.0, 0.0]
    settle(service)
    late = service.lateness()
    assert (late.polls, late.late, late.late_share) == (6, 3, 0.5)
    assert dict(late.buckets)[1.0] == 3 and dict(late.buckets)[30.0] == 6
    client = create_app(service.config, service.store, service, clock=clock).test_client()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "aggregator_polls_late_last_hour 3\n" in metrics
    assert "aggregator_polls_late_ratio 0.5000\n" in metrics
    assert 'aggregator_poll_lateness_seconds{quantile="0.99"} 30.000\n' in metrics
    assert 'aggregator_poll_lateness_le_seconds{le="+Inf"} 6\n' in metrics
    page = client.get("/").get_data(as_text=True)
    assert "<b>50%</b> of polls in the last hour started late" in page
    clock.advance(3601)  # over an hour on, those polls are out of the window
    assert service.lateness().polls == 0
    assert 'id="lateness"' not in client.get("/").get_data(as_text=True)


def test_a_stop_waits_for_a_claimed_poll_and_records_it(
    make_config: MakeConfig, threaded_httpserver: HTTPServer, services: list[Service]
) -> None:
    gate = Gate()
    threaded_httpserver.expect_request("/slow").respond_with_handler(
        gate.held(lambda _r: Response(rss(item("g", "Post")), content_type="application/rss+xml"))
    )
    _, service = started_service(make_config, [threaded_httpserver.url_for("/slow")], services)
    assert [c.name for c in service.claim_due()] == ["s0"]
    gate.wait(lambda g: g.active == 1, "the claimed poll's request")
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(service.shutdown(wait=True)))
    stopper.start()
    wait_for(lambda: service._stopping, "the stop to begin")
    assert not service.claim_due()  # nothing more is claimed once stopping
    assert stopper.is_alive()  # the stop waits for the poll in flight
    gate.open()
    stopper.join()
    assert stopped == [True]
    after = row(service.store, "s0")
    assert after.lease_token is None and after.last_polled_at == FIXED_NOW  # recorded
    assert after.next_poll_at == FIXED_NOW + timedelta(seconds=600)


def test_lateness_summarised_in_sql_as_by_hand(tmp_path: Path, stores: list[Store]) -> None:
    """Counts, sum, buckets and the nearest-rank percentiles of the window, from SQL,
    equal those worked out here from the same values; claims older than the window
    are left out."""
    store = open_store(tmp_path, stores)
    rng = random.Random(13)
    values = [round(rng.expovariate(1 / 20), 3) for _ in range(997)]
    old = [1e6] * 5  # claimed before the window: not counted
    with store.transaction() as conn:
        conn.execute(
            sa.insert(claims_table),
            [{"claimed_at": FIXED_NOW - timedelta(minutes=30), "late": v} for v in values]
            + [{"claimed_at": FIXED_NOW - timedelta(hours=2), "late": v} for v in old],
        )
    with store.reading() as conn:
        late = claims.lateness(conn, FIXED_NOW)
    ordered = sorted(values)
    n = len(ordered)
    assert (late.polls, late.late) == (n, sum(1 for v in values if v > claims.LATE_AFTER))
    assert late.p50 == ordered[int(0.5 * n)] and late.p99 == ordered[int(0.99 * n)]
    assert late.total == pytest.approx(sum(values))
    assert late.buckets == tuple((b, sum(1 for v in values if v <= b)) for b in claims.BUCKETS)
    with store.reading() as conn:
        empty = claims.lateness(conn, FIXED_NOW + timedelta(hours=2))
    assert (empty.polls, empty.p50, empty.p99, empty.buckets[-1]) == (0, 0.0, 0.0, (3600.0, 0))


def test_a_lease_lost_mid_batch_records_history_only_and_the_batch_goes_on(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock, service = started_service(make_config, feeds, services)
    with service.store.transaction() as conn:
        got = claims.claim(conn, clock.now(), limit=3, per_host=3, lease=LEASE)
    tokens = {c.name: c.token for c in got}
    with service.store.transaction() as conn:  # s1's lease ran out; another claim took it
        conn.execute(
            sa.update(sources_table)
            .where(sources_table.c.name == "s1")
            .values(lease_token="newer", lease_until=FIXED_NOW + LEASE)
        )
    poller = service.poller
    states = service.store.load_states(tokens)
    polled: list[Polled] = []
    for name in ("s0", "s1", "s2"):
        source = service.config.source(name)
        assert source is not None
        result = poller._poll_guarded(source, states.get(name), None, False)
        assert isinstance(result, Parsed)
        polled.append(result)
    # The three polls written as one batch, as a group commit of claimed polls is.
    records = poller._write(polled, [tokens["s0"], tokens["s1"], tokens["s2"]])
    assert [r.outcome.new for r in records] == [1, 1, 1]
    for name in ("s0", "s2"):
        after = row(service.store, name)
        assert after.lease_token is None and after.last_polled_at == FIXED_NOW
    lost = row(service.store, "s1")
    assert lost.lease_token == "newer"  # the newer claim still holds it
    assert lost.last_polled_at is None and lost.body_hash is None  # state untouched
    with service.store.reading() as conn:
        by_source: dict[str, int] = dict(
            conn.execute(
                sa.select(polls_table.c.source, sa.func.count()).group_by(polls_table.c.source)
            ).all()
        )
    assert by_source == {"s0": 1, "s1": 1, "s2": 1}  # its history is recorded all the same


def test_a_pause_after_the_claim_read_its_states_is_seen_by_the_poll(
    make_config: MakeConfig, feeds: list[str], services: list[Service]
) -> None:
    clock, service = started_service(make_config, feeds[:1], services)
    with service.store.transaction() as conn:
        [claimed] = claims.claim(conn, clock.now(), limit=1, per_host=3, lease=LEASE)
    loaded = service._load_states(["s0"])  # as claim_due reads them, before the pause
    assert loaded is not None and loaded.states["s0"].status == Status.NEW
    with service.holding("s0"):  # the admin's pause, while the claimed poll waits
        service.store.set_status("s0", feeds[0], Status.PAUSED.value, "paused by the admin")
    with service._idle:
        service._in_flight += 1  # counted in flight, as claim_due does before it starts one
    service.jobs.submit(service._run_claimed, claimed, None, loaded).result(timeout=30)
    after = row(service.store, "s0")
    assert after.status == Status.PAUSED.value and after.reason == "paused by the admin"
    assert after.last_polled_at is None  # skipped: the poll read the state again
    assert after.lease_token is None  # and its claim ended


def test_a_backlog_is_claimed_again_as_its_polls_end_not_a_tick_later(
    make_config: MakeConfig, httpserver: HTTPServer, services: list[Service]
) -> None:
    """Two slots, seven sources due, one tick: the polls that end claim the rest (each
    once), so quick polls are not held to ``concurrency`` a tick."""
    urls = []
    for n in range(7):
        httpserver.expect_request(f"/b{n}").respond_with_data(
            rss(item(f"b{n}", f"Post {n}")), content_type="application/rss+xml"
        )
        urls.append(httpserver.url_for(f"/b{n}"))
    clock = ManualClock()
    service = make_service(make_config, urls, clock, services, concurrency=2)
    service.start(paused=True)  # no tick but the test's one call
    assert len(service.claim_due()) == 2
    wait_for(
        lambda: all(row(service.store, f"s{n}").last_polled_at for n in range(7)),
        "every due source polled after one tick",
    )
    settle(service)
    with service.store.reading() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(polls_table.c.source, sa.func.count()).group_by(polls_table.c.source)
            ).all()
        )
    assert counts == {f"s{n}": 1 for n in range(7)}
    assert not service.claim_due()  # none due now: their next polls are 600 s away


def test_a_start_times_the_overdue_and_untimed_but_not_the_held_or_leased(
    tmp_path: Path, stores: list[Store], make_config: MakeConfig
) -> None:
    names = ["future", "overdue", "untimed", "paused", "woken", "leased", "off"]
    sources: list[dict[str, object]] = [
        {"url": f"http://h{n}.test/f", "name": n, "categories": ["A"]} for n in names
    ]
    sources[-1]["enabled"] = False
    config = load_config(make_config(sources))
    store = open_store(tmp_path, stores)
    store.sync_sources(config.sources, FIXED_NOW)
    t = sources_table
    early = FIXED_NOW - timedelta(hours=5)
    with store.transaction() as conn:
        claims.set_next(conn, {"future": FIXED_NOW + timedelta(hours=2), "untimed": None})
        claims.set_next(conn, dict.fromkeys(("overdue", "paused", "leased"), early))
        claims.set_next(conn, {"woken": early}, wake=claims.MANUAL)
        for name in ("paused", "woken"):
            conn.execute(sa.update(t).where(t.c.name == name).values(status="paused"))
        conn.execute(sa.update(t).where(t.c.name == "leased").values(lease_token="x"))
    before = {n: row(store, n).next_poll_at for n in names}

    # Without a spread only the sources with no time get one: the overdue are due already.
    with store.transaction() as conn:
        assert claims.schedule_idle(conn, FIXED_NOW) == 1
    assert row(store, "untimed").next_poll_at == FIXED_NOW

    later = FIXED_NOW + timedelta(seconds=30)
    with store.transaction() as conn:
        set_now = claims.schedule_idle(conn, FIXED_NOW + timedelta(seconds=1), lambda: later)
    assert set_now == 3  # overdue, untimed (now due) and the woken paused one
    after = {n: row(store, n).next_poll_at for n in names}
    assert after["overdue"] == after["untimed"] == after["woken"] == later
    for name in ("future", "paused", "leased", "off"):
        assert after[name] == before[name], name


def test_a_pause_from_another_process_during_a_poll_is_not_overwritten(
    make_config: MakeConfig,
    threaded_httpserver: HTTPServer,
    services: list[Service],
    stores: list[Store],
) -> None:
    """A web replica's pause (its own Store, no service) while a poller's request is in
    flight: the poll records its history, the source stays paused, the lease ends."""
    gate = Gate()
    threaded_httpserver.expect_request("/slow").respond_with_handler(
        gate.held(lambda _r: Response(rss(item("g", "Post")), content_type="application/rss+xml"))
    )
    url = threaded_httpserver.url_for("/slow")
    _, service = started_service(make_config, [url], services)
    replica = Store(service.config.settings.database, service.config.settings.posts_dir)
    stores.append(replica)
    assert [c.name for c in service.claim_due()] == ["s0"]
    gate.wait(lambda g: g.active == 1, "the claimed poll's request")
    replica.set_status("s0", url, Status.PAUSED.value, "paused by the admin")
    assert row(replica, "s0").lease_token is not None  # nobody else takes it meanwhile
    gate.open()
    settle(service)
    after = row(service.store, "s0")
    assert (after.status, after.reason) == (Status.PAUSED.value, "paused by the admin")
    assert after.lease_token is None and after.next_poll_at is None
    assert service.store.polls("s0")  # the poll's history is kept
    assert not service.claim_due()  # and it waits for a resume
