"""The claim loop's statements: which sources are due, who polls them, how late they were.

A source is due when its row's ``next_poll_at`` has come, no live lease holds it, and it
is neither paused nor gone (unless ``wake`` says a refresh or a config change asked for
it). ``claim`` takes due rows in ``next_poll_at`` order, at most ``per_host`` in flight
per host (counting the leases that every poller holds), and gives each a lease: a token
and a time it ends. The poll's record clears the lease in its own transaction only while
the token still matches (``release``), so a poll that outlived its lease, whose source
was claimed again, records its history but leaves the state to the newer claim.

Plain SQLAlchemy Core, for SQLite and PostgreSQL alike. Claimers take turns: on SQLite
the claim's first statement (dropping expired leases) takes the database's single write
lock; on PostgreSQL a transaction-level advisory lock (``CLAIM_LOCK``). The per-host cap
needs it: each claimer counts the leases it can see, and two claiming at once would each
miss the other's uncommitted ones and together exceed the cap (tests/test_claims.py saw
five leases to a host capped at three). A claim is one short transaction per batch, so
turns cost little. The candidates are read ``FOR UPDATE SKIP LOCKED`` (SQLite compiles
that to nothing): a row locked by another transaction, a poll's record or a refresh, is
skipped, not waited for. The lease is also set by a compare-and-set update: a row
another claimer took meanwhile is left out.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aggregator.models import Status
from aggregator.store.notify import WAKE, notify
from aggregator.store.schema import claims_table, sources_table

HELD = (Status.PAUSED.value, Status.GONE.value)  # wait for a refresh or a config change
MANUAL = "manual"  # wake: a user asked for a poll (even of a paused or gone source)
CONFIG = "config"  # wake: the source's settings changed (a paused one is polled again)
HELD_MARK = ":held"  # ends the lease token of a claim that an admin's pause or resume overtook
LATE_AFTER = 10.0  # seconds: a poll claimed later than this after its time started late
LATENESS_WINDOW = timedelta(hours=1)  # how long each claim's lateness is kept
CANDIDATES = 4  # rows read per wanted claim, so a busy host does not starve the batch
BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)  # seconds
CLAIM_LOCK = 0x636C616D  # PostgreSQL advisory lock key ("clam"): one claimer at a time


@dataclass(frozen=True, slots=True)
class Claim:
    """One source handed to a poller."""

    name: str
    token: str  # the lease's: the poll's record clears the lease only with it
    late: float  # seconds between the source's time and its claim
    manual: bool  # a refresh: poll even a paused or gone source


@dataclass(frozen=True, slots=True)
class Lateness:
    """How late the polls claimed in the last hour started."""

    polls: int
    late: int  # started more than ``LATE_AFTER`` s after their time
    p50: float
    p99: float
    total: float  # seconds, summed
    buckets: tuple[tuple[float, int], ...]  # (upper bound, polls at most that late)

    @property
    def late_share(self) -> float:
        """The share of polls that started late (0 when none ran)."""
        return self.late / self.polls if self.polls else 0.0


def host_of(url: str) -> str:
    """The host a source's requests go to (the per-host cap counts by it)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _due(now: datetime) -> sa.ColumnElement[bool]:
    t = sources_table
    return sa.and_(
        t.c.next_poll_at.is_not(None),
        t.c.next_poll_at <= now,
        t.c.lease_token.is_(None),
        _unheld(),
    )


def _unheld() -> sa.ColumnElement[bool]:
    """Neither paused nor gone, or woken (by a refresh or a change of settings)."""
    t = sources_table
    # Not NOT IN: an expanding IN list cannot be part of an executemany statement.
    others = sa.and_(*(t.c.status != value for value in HELD))
    return sa.or_(t.c.status.is_(None), others, t.c.wake.is_not(None))


def claim(
    conn: Connection,
    now: datetime,
    *,
    limit: int,
    per_host: int,
    lease: timedelta,
    host: Callable[[str], str] = host_of,
) -> list[Claim]:
    """Claim up to ``limit`` due sources, at most ``per_host`` in flight per host.

    Args:
        conn: a connection in a write transaction (``Store.transaction()``).
        now: the claim's time (its lateness is measured from it).
        limit: how many to claim at most (the poller's free slots).
        per_host: polls in flight to one host, across every poller.
        lease: how long a claim holds its source (a crashed poller's come back after it).
        host: a URL's host.
    """
    t = sources_table
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK)))
    # Expired leases first: a crashed claim comes back. On SQLite this write also takes
    # the write lock, so the reads below and the updates after them are one claimer's.
    conn.execute(
        sa.update(t)
        .where(t.c.lease_token.is_not(None), t.c.lease_until <= now)
        .values(lease_until=None, lease_token=None)
    )
    if limit <= 0:
        return []
    busy: dict[str, int] = {}
    for url in conn.execute(sa.select(t.c.url).where(t.c.lease_token.is_not(None))).scalars():
        busy[host(url)] = busy.get(host(url), 0) + 1
    candidates = conn.execute(
        sa.select(t.c.name, t.c.url, t.c.next_poll_at, t.c.wake)
        .where(_due(now))
        .order_by(t.c.next_poll_at, t.c.name)
        .limit(limit * CANDIDATES)
        .with_for_update(skip_locked=True)
    ).all()
    chosen: list[tuple[Any, str]] = []  # (row, its token)
    for row in candidates:
        if len(chosen) >= limit:
            break
        where = host(row.url)
        if busy.get(where, 0) >= per_host:
            continue
        busy[where] = busy.get(where, 0) + 1
        chosen.append((row, secrets.token_hex(8)))
    if not chosen:
        return []
    # Compare and set, in one statement for the batch: a row another claimer leased since
    # it was read keeps that lease, and the read back below leaves it out.
    conn.execute(
        sa.update(t)
        .where(t.c.name == sa.bindparam("key"), t.c.lease_token.is_(None))
        .values(lease_until=now + lease, lease_token=sa.bindparam("token")),
        [{"key": row.name, "token": token} for row, token in chosen],
    )
    tokens = [token for _row, token in chosen]
    ours = set(conn.execute(sa.select(t.c.name).where(t.c.lease_token.in_(tokens))).scalars())
    claims = [
        Claim(row.name, token, _seconds(now - row.next_poll_at), row.wake == MANUAL)
        for row, token in chosen
        if row.name in ours
    ]
    if claims:
        c = claims_table
        conn.execute(sa.insert(c), [{"claimed_at": now, "late": k.late} for k in claims])
        conn.execute(sa.delete(c).where(c.c.claimed_at < now - LATENESS_WINDOW))
    return claims


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def claim_one(conn: Connection, name: str, now: datetime, lease: timedelta) -> str | None:
    """Lease one source whatever its time (a poll asked for by name); None: it is held."""
    t = sources_table
    conn.execute(
        sa.update(t)
        .where(t.c.name == name, t.c.lease_token.is_not(None), t.c.lease_until <= now)
        .values(lease_until=None, lease_token=None)
    )
    token = secrets.token_hex(8)
    taken = conn.execute(
        sa.update(t)
        .where(t.c.name == name, t.c.lease_token.is_(None))
        .values(lease_until=now + lease, lease_token=token)
    ).rowcount
    return token if taken else None


def claim_named(
    conn: Connection, names: Sequence[str], now: datetime, lease: timedelta
) -> dict[str, str]:
    """Lease the named sources whatever their time (``claim_one`` for a batch, two
    statements whatever its size): name to token for those taken; the others are held
    by another claimer (a lease that has run out is taken over)."""
    t = sources_table
    if not names:
        return {}
    tokens = {name: secrets.token_hex(8) for name in names}
    free = sa.or_(t.c.lease_token.is_(None), t.c.lease_until <= now)
    conn.execute(
        sa.update(t)
        .where(t.c.name == sa.bindparam("key"), free)
        .values(lease_until=now + lease, lease_token=sa.bindparam("token")),
        [{"key": name, "token": token} for name, token in tokens.items()],
    )
    taken = conn.execute(sa.select(t.c.name, t.c.lease_token).where(t.c.name.in_(names)))
    return {name: token for name, token in taken if tokens[name] == token}


def hold(conn: Connection, name: str) -> None:
    """Mark a source's claim, if it has one, as overtaken by an admin's pause or resume
    (in any process): the poll in flight still records its history, but its release
    (``release``) finds its lease held and leaves the source's state as the admin set it.
    The lease itself stays until that poll ends (or the lease runs out), so nobody else
    fetches the source meanwhile."""
    t = sources_table
    conn.execute(
        sa.update(t)
        .where(
            t.c.name == name,
            t.c.lease_token.is_not(None),
            sa.not_(t.c.lease_token.endswith(HELD_MARK, autoescape=True)),
        )
        .values(lease_token=t.c.lease_token + HELD_MARK)
    )


def release_all(conn: Connection, leases: Mapping[str, str], *, done: bool = True) -> None:
    """``release`` for many claims, in one statement (and one more for held ones)."""
    t = sources_table
    if leases:
        for mark, values in (("", {"wake": None} if done else {}), (HELD_MARK, {})):
            conn.execute(
                sa.update(t)
                .where(t.c.name == sa.bindparam("key"), t.c.lease_token == sa.bindparam("token"))
                .values(lease_until=None, lease_token=None, **values),
                [{"key": name, "token": token + mark} for name, token in leases.items()],
            )


def release(conn: Connection, name: str, token: str, *, done: bool = True) -> bool:
    """End a claim: clear its lease (``done``: and its wake, the poll having run), if the
    lease is still this token's; a lease an admin held (``hold``) is cleared alone.

    Returns:
        False when the lease ended and the source was claimed again (or freed), or an
        admin paused or resumed it meanwhile: the caller must not write its state.
    """
    t = sources_table
    end = sa.update(t).values(lease_until=None, lease_token=None)
    ours = conn.execute(
        end.where(t.c.name == name, t.c.lease_token == token).values(
            **({"wake": None} if done else {})
        )
    ).rowcount
    if not ours:  # the admin's change stands, and so does a refresh asked since
        conn.execute(end.where(t.c.name == name, t.c.lease_token == token + HELD_MARK))
    return bool(ours)


def add_missing(conn: Connection, wanted: Mapping[str, tuple[str, datetime]]) -> int:
    """Create the rows of sources never polled, due at the time given (name: url, time).

    The smallest config-to-index sync the claim loop needs (a source without a row is
    never claimed); a fuller sync of the sources table may replace it.
    """
    t = sources_table
    known = set(conn.execute(sa.select(t.c.name)).scalars())
    rows = [
        {"name": name, "url": url, "next_poll_at": when}
        for name, (url, when) in wanted.items()
        if name not in known
    ]
    if rows:
        conn.execute(sa.insert(t), rows)
    return len(rows)


def schedule_idle(
    conn: Connection, now: datetime, due: Callable[[], datetime] | None = None
) -> int:
    """Give a time to the enabled configured sources that the claim loop would take but
    has no time for (``now``), and with ``due``, to those overdue too (``due()`` each: a
    start spreads them); held and leased sources are left as they are. The number set.
    """
    t = sources_table
    idle: sa.ColumnElement[bool] = t.c.next_poll_at.is_(None)
    if due is not None:
        idle = sa.or_(idle, t.c.next_poll_at <= now)
    names = conn.execute(
        sa.select(t.c.name).where(
            idle,
            t.c.settings.is_not(None),
            t.c.removed_at.is_(None),
            t.c.enabled.is_(True),
            t.c.lease_token.is_(None),
            _unheld(),
        )
    ).scalars()
    when = due or (lambda: now)
    times: dict[str, datetime | None] = {name: when() for name in names}
    set_next(conn, times)
    return len(times)


def set_next(
    conn: Connection,
    times: Mapping[str, datetime | None],
    *,
    wake: str | None = None,
    clear_wake: bool = False,
    unheld: bool = False,
) -> None:
    """Set sources' next poll times (None: not scheduled), with ``wake`` if given
    (``clear_wake``: without one); ``unheld``: only of those not paused or gone (or
    woken)."""
    t = sources_table
    values: dict[str, object] = {"next_poll_at": sa.bindparam("when")}
    if wake is not None or clear_wake:
        values["wake"] = wake
    statement = sa.update(t).where(t.c.name == sa.bindparam("key")).values(values)
    if unheld:
        statement = statement.where(_unheld())
    rows = [{"key": name, "when": when} for name, when in times.items()]
    if rows:
        conn.execute(statement, rows)


def request(conn: Connection, name: str, url: str, now: datetime) -> None:
    """A refresh: poll the source at the next claim, even if paused or gone."""
    t = sources_table
    add_missing(conn, {name: (url, now)})
    conn.execute(sa.update(t).where(t.c.name == name).values(next_poll_at=now, wake=MANUAL))
    notify(conn, WAKE)  # a poller's claim loop, at the commit, not at its next tick


def next_poll(conn: Connection, name: str) -> datetime | None:
    """When the claim loop takes a source next (None: it waits, or has no row)."""
    t = sources_table
    row = conn.execute(
        sa.select(t.c.next_poll_at, t.c.status, t.c.wake).where(t.c.name == name)
    ).first()
    if row is None or (row.status in HELD and row.wake is None):
        return None
    when: datetime | None = row.next_poll_at
    return when


def _window_queries() -> tuple[sa.Executable, sa.Executable]:
    """The statements of ``lateness``, made once (building them cost more than running
    them on an idle hour): the window's figures, and the lateness at a rank."""
    c = claims_table.c
    recent = c.claimed_at >= sa.bindparam("since", type_=c.claimed_at.type)
    at_most = [sa.func.sum(sa.case((c.late <= bound, 1), else_=0)) for bound in BUCKETS]
    figures = sa.select(
        sa.func.count(),
        sa.func.sum(sa.case((c.late > LATE_AFTER, 1), else_=0)),
        sa.func.sum(c.late),
        *at_most,
    ).where(recent)
    at_rank = sa.select(c.late).where(recent).order_by(c.late)
    return figures, at_rank.offset(sa.bindparam("rank")).limit(1)


_WINDOW, _AT_RANK = _window_queries()


def lateness(conn: Connection, now: datetime) -> Lateness:
    """The lateness of the claims of the last hour, summarised in SQL (a busy hour holds
    a row per poll: hundreds of thousands at 100,000 sources, none pulled into Python).

    Counts, the sum and the cumulative buckets in one pass over the window (the
    (claimed_at, late) index holds both); each percentile, the value at its rank
    (``int(q * n)``, nearest rank from below) in ``late`` order.
    """
    since = {"since": now - LATENESS_WINDOW}
    n, late, total, *buckets = conn.execute(_WINDOW, since).one()
    if not n:
        return Lateness(0, 0, 0.0, 0.0, 0.0, tuple((bound, 0) for bound in BUCKETS))

    def rank(q: float) -> float:
        at = {**since, "rank": min(n - 1, int(q * n))}
        return float(conn.execute(_AT_RANK, at).scalar_one())

    return Lateness(
        int(n),
        int(late),
        rank(0.5),
        rank(0.99),
        float(total),
        tuple((bound, int(count)) for bound, count in zip(BUCKETS, buckets, strict=True)),
    )
