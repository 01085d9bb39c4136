"""APScheduler 3.x wiring: a claim loop over the index's ``sources`` rows.

One interval job (``claim_due``, every second) claims the sources whose ``next_poll_at``
has come, oldest first, as many as the job pool has free threads and at most
``per_host`` in flight per host, and starts their polls there (``store/claims.py`` has
the statements). A claim leases its row: no other claim, here or in another process,
takes the source until the poll's record ends the lease, or until the lease runs out (a
crashed poller's sources come back). A claim reads its sources' states in one query,
not one per poll (unless an admin held a source since: then the poll reads its own);
polls that end together are stored and recorded in one transaction (the poller's group
commit), each with its lease. The poll's record sets the next time (so the
interval adapts, backs off and pauses); a refresh, a pause and a resume are row updates
the next tick sees. A per-source lock still keeps a poll by hand (``_run``) and an
admin's pause apart from a claimed poll. Next-poll times live in the store, so a restart
keeps them, and sources that are due or new start spread over ``startup_spread``
seconds instead of all at once.

Stopping never waits inside APScheduler (its ``shutdown(wait=True)`` deadlocked against
a poll rescheduling itself, issue 9): the service stops claiming first, shuts the
scheduler down without waiting, then waits for the polls in flight itself, for at most
as long as a fetch may take.

The configuration file is watched (and re-read on SIGHUP): it is synced into the index's
``sources`` table, and added, removed and changed sources get their rows' times; an
invalid new config is refused, with the full report in the log, and the old one keeps
running. What a poll, ``next_run`` and ``refresh`` know of a source comes from that table,
by key (``Store.sources_by_key``, one query for a claimed batch), not from the config this
process loaded: a source another process synced is polled here too. Its secret fetch
options come from this process's config only when that has the synced settings; else the
poll is recorded as failed, never made without them.

Jobs (a rebuild, a prune) asked for from any process's dashboard run here too
(``JobRunner``), one at a time across every process of the index, in a thread of their
own: the web layer only writes a row and shows how the last one went.

A poll or rebuild that changed article files or entries tells ``change_listeners``
(``_changed``): the hooks (``aggregator/hooks.py``), which pass it on to the site.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator.config import Config, SourceConfig, Stamp, config_stamp, load_config
from aggregator.errors import ConfigError, StoreError
from aggregator.hooks import Hooks
from aggregator.models import Changes, RebuildStatus, SourceOutcome
from aggregator.poll.pipeline import Clock, Poller, utcnow
from aggregator.poll.worker import make_executor
from aggregator.redact import redact
from aggregator.store import Store, claims, jobs, notify
from aggregator.store.catalog import IndexedSource
from aggregator.store.claims import Claim, Lateness
from aggregator.store.locks import LockHeld
from aggregator.store.records import KEEP, Keep, SourceState
from aggregator.store.static import StaticFeeds

log = logging.getLogger(__name__)

CONFIG_CHECK_SECONDS = 2.0
CLAIM_SECONDS = 1.0  # the claim loop's tick
LEASE_FACTOR = 2.0  # a claim's lease, in units of the longest a poll should take
STOP_MARGIN = 10.0  # seconds beyond the longest fetch for a poll to parse and store
RESTART_SETTINGS = ("posts_dir", "database", "server", "workers")


@dataclass(frozen=True, slots=True)
class Loaded:
    """The states of a claim's sources, read in one query when it was made."""

    #: name → state; absent: never polled.
    states: dict[str, SourceState]
    #: ``Service._holds`` when they were read.
    holds: int


class JobRunner(jobs.Requests):
    """Runs the index's waiting jobs (``store/jobs.py``: a rebuild, a prune) in a thread
    of its own, under the jobs lock: one at a time across every process of the index.

    Asked for here (``rebuild``) the job starts at once; asked for elsewhere (a web
    replica's button, another process) it starts at the next ``look``, every second.
    The thread is a daemon: a stop does not wait for a rebuild (it may take long), and
    what it leaves half done is safe, since every file write is atomic (or an outbox
    row) and a rebuild can simply be asked for again; its row says it stopped.

    Args:
        store: the index.
        make_poller: a poller for one job (closed after it), over the configuration in
            force when the job starts.
        clock: the current UTC time.
        on_change: told what a rebuild changed (the service's hooks).
        after: called when a job has ended (its files may have changed).
    """

    def __init__(
        self,
        store: Store,
        make_poller: Callable[[], Poller],
        clock: Clock = utcnow,
        on_change: Callable[[Changes], None] | None = None,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(store, clock)
        self.make_poller = make_poller
        self.on_change = on_change
        self.after = after
        self.name = jobs.runner_name()
        self._lock = threading.Lock()
        self._busy = False
        self._current: jobs.Job | None = None
        self._stopped = False  # set by ``stop``: no job is taken after it
        self._idle = threading.Event()
        self._idle.set()

    def request(self, kind: str) -> bool:
        """Ask for a job of ``kind`` and start it here now; False when one is waiting
        or running already."""
        asked = super().request(kind)
        if asked:
            self.kick()
        return asked

    def look(self) -> None:
        """Start the waiting jobs, if any (the service's tick, every second)."""
        if self._busy:
            return
        try:
            with self.store.reading() as conn:
                found = jobs.waiting(conn)
        except StoreError as exc:
            log.warning("jobs not looked for: %s", exc)
            return
        if found:
            self.kick()

    def kick(self) -> None:
        """Take and run the waiting jobs in a thread, unless that thread runs already."""
        with self._lock:
            if self._busy:
                return
            self._busy = True
            self._idle.clear()
        threading.Thread(target=self._run_waiting, name="jobs", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until this runner runs no job; False when it still does after ``timeout`` s."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        """The process stops: record the job in flight, if any, as stopped (its thread is
        a daemon, which ends with the process)."""
        self._stopped = True
        job = self._current
        if job is None:
            return
        result = {"error": "stopped with its process before it ended; ask for it again"}
        try:
            with self.store.transaction() as conn:
                jobs.finish(conn, job.id, self.clock(), result, ok=False)
        except StoreError as exc:
            log.warning("job %d not recorded as stopped: %s", job.id, exc)

    def _run_waiting(self) -> None:
        try:
            with jobs.lock(self.store.engine):
                while not self._stopped:  # the next job waits for a runner that stays
                    with self.store.transaction() as conn:
                        job = jobs.take(conn, self.clock(), self.name)
                    if job is None:
                        break
                    self._current = job
                    self._run(job)
                    self._current = None
        except LockHeld:
            pass  # another process runs a job; it takes the waiting ones after it
        except Exception:  # a bug or a lost database: the rows wait for the next look
            log.exception("jobs not run")
        finally:
            with self._lock:
                self._busy = False
                self._current = None
            self._idle.set()

    def _run(self, job: jobs.Job) -> None:
        log.info("job %d: %s asked for by %s", job.id, job.kind, job.requested_by)
        ok = True
        run = {jobs.REBUILD: self._rebuild, jobs.PRUNE: self._prune}[job.kind]  # take: KINDS
        try:
            result = run()
        except Exception as exc:  # reported on the dashboard; the next one may work
            log.exception("job %d: %s crashed", job.id, job.kind)
            result, ok = {"error": redact(str(exc)) or type(exc).__name__}, False
        with self.store.transaction() as conn:
            jobs.finish(conn, job.id, self.clock(), result, ok=ok)
        self.after()

    def _rebuild(self) -> dict[str, Any]:
        poller = self.make_poller()
        try:
            outcomes = poller.rebuild(poller.config.sources)
        finally:
            poller.close()
        if self.on_change is not None:
            self.on_change(sum((o.changes for o in outcomes), Changes()))
        result = jobs.rebuild_result(outcomes)
        log.info("rebuild done: %d sources, %d updated", result["sources"], result["updated"])
        return result

    def _prune(self) -> dict[str, Any]:
        poller = self.make_poller()
        try:
            pruned = poller.prune(poller.config.sources)
        finally:
            poller.close()
        return {"sources": len(pruned), "pruned": sum(pruned.values())}


class Service:
    """The polling service behind ``aggregator run``.

    Args:
        config_path: the file to watch for changes.
        config: its validated content.
        store: the shared store.
        clock: the current UTC time (tests fix it).
        rng: the random source for jitter and start-up spread.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        config: Config,
        store: Store,
        *,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.poller = Poller(config, store, clock=clock, rng=self.rng)
        # Sized by workers, not by today's sources: a reload may add many.
        self.pool: Executor = make_executor(self.poller.workers, max(2, len(config.sources)))
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._holds = 0  # admin holds so far (``holding``): a claim's states go stale
        self._reload_lock = threading.Lock()
        self._claim_lock = threading.Lock()  # one claim at a time in this process
        self._idle = threading.Condition()  # guards the two fields below
        self._in_flight = 0  # polls running now (claimed ones from their claim on)
        self._stopping = False  # once set, nothing is claimed and no poll starts
        self._backlog = False  # the last claim filled every free slot: more may be due
        self._woken: threading.Thread | None = None  # follows notifications (PostgreSQL)
        self._unwoken = threading.Event()  # set at the stop: the notifications thread ends
        self._config_stamp = self._stamp()
        self._syncs = 0  # syncs of the index by this service (a poll checks for one after)
        schedule = config.settings.schedule
        # The polls run here, ``concurrency`` at once (threads start as they are needed);
        # the claim loop never claims more than are free, so nothing waits in its queue
        # while its lease runs out. A change of ``concurrency`` takes effect on restart.
        self.concurrency = schedule.concurrency
        self.jobs = ThreadPoolExecutor(self.concurrency, thread_name_prefix="poll")
        # The claim loop's tick (two may overlap), the config watch and the look for jobs,
        # none of which waits on a poll.
        self.scheduler = BackgroundScheduler(
            executors={"default": JobThreads(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.last_reload_error: str | None = None
        self.on_poll: Callable[[SourceOutcome], None] | None = None
        self.hooks = Hooks(config.settings.hooks, store)
        # Told of every poll and rebuild that changed files or entries (the one place).
        # A poller without the posts folder (``aggregator poller``, ``Store.outbox``)
        # tells nobody: its files are written by the exporter, which runs the hooks.
        self.change_listeners: list[Callable[[Changes], None]] = (
            [] if store.outbox else [self.hooks.notify]
        )
        # One worker: a rebuild must not take the processes the scheduled polls parse in.
        # The static feeds (settings.publish.static_dir) follow every change, off the
        # poll's thread.
        self.static = StaticFeeds(store, lambda: self.config, clock)
        self.runner = JobRunner(
            store,
            lambda: Poller(self.config, store, clock=clock, rng=self.rng, workers=1),
            clock,
            on_change=self._changed,
            after=self._pass_ended,
        )

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self.poller.config

    # -- life cycle ----------------------------------------------------------------------

    def start(self, *, paused: bool = False) -> None:
        """Give every enabled source its next-poll time and start the claim loop.

        Args:
            paused: set the times without running anything (tests inspect the schedule
                and call ``claim_due`` themselves).
        """
        self.sync_sources(self.config)  # an added source gets its time here
        due = self._spread()
        try:
            with self.store.transaction() as conn:
                claims.schedule_idle(conn, self.clock(), due)  # overdue while stopped
        except StoreError as exc:
            log.error("sources not scheduled at start: %s", exc)
        # Two instances allowed: a tick that waits on the write lock (a big poll's commit)
        # makes the next one return at once (``_claim_lock``) instead of APScheduler
        # logging a skipped run every second.
        self.scheduler.add_job(
            self.claim_due, "interval", seconds=CLAIM_SECONDS, id="claim", max_instances=2
        )
        self.scheduler.add_job(
            self.check_config, "interval", seconds=CONFIG_CHECK_SECONDS, id="config-watch"
        )
        # Jobs asked for in another process (a web replica's dashboard, say).
        self.scheduler.add_job(self.runner.look, "interval", seconds=CLAIM_SECONDS, id="jobs")
        self.scheduler.start(paused=paused)
        if not paused and self.store.dialect == "postgresql":
            # A refresh or a job asked for in another process wakes the claim loop at
            # its commit, not at the next tick (which stays: the fallback).
            listener = notify.Listener(self.store.engine, [notify.WAKE])
            listener.open()  # listening when start returns
            self._woken = threading.Thread(
                target=self._wake_on_notify, args=(listener,), name="notify", daemon=True
            )
            self._woken.start()
        self._pass_ended()  # the config or the entries may have changed while stopped

    def _wake_on_notify(self, listener: notify.Listener) -> None:
        try:
            while not self._unwoken.is_set():
                try:
                    if listener.wait(CLAIM_SECONDS, self._unwoken) and not self._stopping:
                        self.claim_due()
                        self.runner.look()
                except Exception:  # a bug must not end the wake-ups: the next may work
                    log.exception("a notification was not followed")
        finally:
            listener.close()

    @property
    def stop_grace(self) -> float:
        """Seconds a stop waits for polls in flight: the longest a fetch may take, and some.

        A response's body is cut at the fetch's total deadline however slowly it comes
        (see ``Fetcher._read_body``); its status line and headers are bounded by the read
        timeout alone. The margin is for parsing and storing what arrived.
        """
        fetcher = self.poller.fetcher
        return fetcher.timeout + fetcher.total_timeout + STOP_MARGIN

    @property
    def lease(self) -> timedelta:
        """How long a claim holds its source: twice the longest a poll should take, so a
        slow poll keeps it and a crashed poller's sources come back within minutes."""
        return timedelta(seconds=LEASE_FACTOR * self.stop_grace)

    def shutdown(self, wait: bool = True) -> bool:
        """Stop claiming; with ``wait``, let in-flight polls finish (and be recorded).

        Returns:
            False when polls were still running after ``stop_grace`` seconds.
        """
        with self._idle:
            self._stopping = True
        self.hooks.close()  # kills a running command: a stop never waits for the site
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # a tick in progress claims nothing now
        self._unwoken.set()
        if self._woken is not None:
            # It sees the stop within a slice of its wait (or its connect's timeout); a
            # daemon, so a claim it is making cannot hold the stop past that.
            self._woken.join(notify.CONNECT_TIMEOUT + 2 * notify.SLICE)
        finished = not wait or self._wait_idle(self.stop_grace)
        self.jobs.shutdown(wait=False)  # its polls ended above, or are given up on
        self.pool.shutdown(wait=finished, cancel_futures=True)
        self.runner.stop()  # a rebuild in flight is not waited for: its row says so
        self.static.close()
        self.poller.close()
        return finished

    def _wait_idle(self, timeout: float) -> bool:
        with self._idle:
            if self._in_flight:
                log.info("waiting for %d polls in flight", self._in_flight)
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- the claim loop ------------------------------------------------------------------

    def claim_due(self) -> list[Claim]:
        """The claim loop's tick: claim due sources, as many as there are free slots, and
        start their polls in the job pool.

        Returns:
            The claims made (tests look at them).
        """
        if not self._claim_lock.acquire(blocking=False):
            return []  # the previous tick is still claiming
        try:
            with self._idle:
                free = self.concurrency - self._in_flight
                if self._stopping or free <= 0:
                    return []
            try:
                with self.store.transaction() as conn:
                    got = claims.claim(
                        conn,
                        self.clock(),
                        limit=free,
                        per_host=self.config.settings.schedule.per_host,
                        lease=self.lease,
                    )
            except StoreError as exc:  # e.g. a locked or full database: next tick
                log.error("cannot claim sources: %s", exc)
                return []
            # Their settings from the index, in one query for the batch (failing that,
            # each poll reads its own).
            known: dict[str, IndexedSource] | None = None
            try:
                known = self._sources([claim.name for claim in got]) if got else {}
            except StoreError as exc:
                log.error("cannot read the claimed sources: %s", exc)
            with self._idle:
                self._backlog = len(got) >= free
            loaded = self._load_states([c.name for c in got])
            started: list[Claim] = []
            for claim in got:
                with self._idle:
                    stopping = self._stopping
                    if not stopping:
                        self._in_flight += 1  # counted now: a stop waits for it
                if stopping:
                    self._end(claim.name, claim.token, done=False)  # back at once
                    continue
                try:
                    self.jobs.submit(self._run_claimed, claim, known, loaded)
                except RuntimeError:  # the job pool was shut down meanwhile (a stop)
                    self._finished()
                    self._end(claim.name, claim.token, done=False)
                    continue
                started.append(claim)
            return started
        finally:
            self._claim_lock.release()

    def _load_states(self, names: list[str]) -> Loaded | None:
        """The states of a claim's sources, in one query (not one per poll); None when
        they cannot be read now (each poll reads its own then)."""
        if not names:
            return None
        holds = self._holds
        try:
            return Loaded(self.store.load_states(names), holds)
        except StoreError as exc:
            log.warning("cannot read the claimed sources' states: %s", exc)
            return None

    def _run_claimed(
        self,
        claim: Claim,
        known: dict[str, IndexedSource] | None = None,
        loaded: Loaded | None = None,
    ) -> None:
        try:
            self._poll(claim.name, claim.manual, claim.token, known, loaded)
        except Exception:  # logged; the lease brings the source back
            log.exception("source=%s claimed poll crashed", claim.name)
        finally:
            self._finished()
        if self._claim_again():
            try:
                self.claim_due()
            except Exception:  # the next tick claims them
                log.exception("claiming the backlog failed")

    def _claim_again(self) -> bool:
        """Whether a poll that just ended should claim now rather than leave it to the
        next tick: the last claim took as many as it could (more were due) and half the
        slots are free again. Without it a backlog of quick polls (a pass of 304s) goes
        no faster than ``concurrency`` a tick, whatever the hosts could give."""
        with self._idle:
            free = self.concurrency - self._in_flight
            return self._backlog and not self._stopping and free >= max(1, self.concurrency // 2)

    def _finished(self) -> None:
        """One poll fewer in flight (a stop may be waiting for none)."""
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _end(
        self,
        name: str,
        token: str | None,
        *,
        done: bool = True,
        next_poll: datetime | Keep | None = KEEP,
    ) -> None:
        """End a poll that recorded nothing: drop its lease (``done``: and its wake) and
        set its next-poll time unless ``KEEP``."""
        try:
            with self.store.transaction() as conn:
                ours = token is None or claims.release(conn, name, token, done=done)
                if ours and not isinstance(next_poll, Keep):
                    claims.set_next(conn, {name: next_poll}, clear_wake=next_poll is None)
        except StoreError as exc:  # the lease runs out and the source comes back
            log.error("source=%s cannot end its claim: %s", name, exc)

    # -- scheduling ----------------------------------------------------------------------

    def _reschedule(self, sources: list[SourceConfig]) -> None:
        """Poll sources whose settings a reload changed soon (spread over
        ``startup_spread``); a held one only if the sync woke it (its settings differ from
        those it was held with)."""
        due = self._spread()
        now = self.clock()
        times = {s.key: due() if due else now for s in sources if s.enabled}
        with self.store.transaction() as conn:
            claims.set_next(conn, times, unheld=True)

    def _spread(self) -> Callable[[], datetime] | None:
        """A source's first time after a start or a reload: within ``startup_spread``
        seconds from now, at a random point, so a start does not hammer every source at
        once (None: no spread, every one due now)."""
        spread = self.config.settings.schedule.startup_spread
        if not spread:
            return None
        now = self.clock()
        return lambda: now + timedelta(seconds=self.rng.uniform(0, spread))

    def _sources(self, names: list[str]) -> dict[str, IndexedSource]:
        """Sources by key from the index (with this process's secrets where it has the
        synced settings); unknown and removed ones are left out."""
        return self.store.sources_by_key(names, self.config)

    def next_run(self, name: str) -> datetime | None:
        """When a source is polled next (None: not scheduled)."""
        source = self._sources([name]).get(name)
        if source is None or not source.config.enabled:
            return None
        with self.store.reading() as conn:
            return claims.next_poll(conn, name)

    def refresh(self, name: str) -> bool:
        """Poll a source at the next claim, even if paused or gone; False if unknown."""
        source = self._sources([name]).get(name)
        if source is None:
            return False
        self.store.request_poll(name, source.config.url, self.clock())
        return True

    def rebuild(self) -> bool:
        """Rebuild every stored article in the background (after rule or option changes).

        Returns:
            False when a rebuild is already running, or the service is stopping.
        """
        return not self._stopping and self.runner.rebuild()

    @property
    def rebuild_status(self) -> RebuildStatus:
        """How the latest rebuild went, or that it is running."""
        return self.runner.rebuild_status

    def unschedule(self, name: str) -> None:
        """Drop a source's pending poll (its row's next-poll time), if it has one."""
        with self.store.transaction() as conn:
            claims.set_next(conn, {name: None}, clear_wake=True)

    def lateness(self) -> Lateness:
        """How late the polls claimed in the last hour started."""
        with self.store.reading() as conn:
            return claims.lateness(conn, self.clock())

    @contextlib.contextmanager
    def holding(self, name: str, timeout: float = 300.0) -> Iterator[None]:
        """Wait for a source's in-flight poll to end and keep others out meanwhile
        (an admin's pause must not be overwritten by a poll that was already running)."""
        lock = self._lock(name)
        with self._locks_guard:
            self._holds += 1  # the states a claim read before are not to be trusted now
        if not lock.acquire(timeout=timeout):
            raise TimeoutError(f"source {name} is still being polled")
        try:
            yield
        finally:
            lock.release()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def _run(self, name: str, manual: bool = False) -> SourceOutcome | None:
        """One poll of a source now, on this thread, without a claim (tests; none starts
        once stopping). Counted in flight like a claimed one."""
        with self._idle:
            if self._stopping:
                return None
            self._in_flight += 1
        try:
            return self._poll(name, manual, None)
        finally:
            self._finished()

    def _poll(
        self,
        name: str,
        manual: bool,
        token: str | None,
        known: dict[str, IndexedSource] | None = None,
        loaded: Loaded | None = None,
    ) -> SourceOutcome | None:
        indexed = known.get(name) if known is not None else self._sources([name]).get(name)
        if indexed is None or not (indexed.config.enabled or manual):
            self._end(name, token, next_poll=None)  # removed or disabled: not scheduled
            return None
        source = indexed.config
        syncs = self._syncs
        lock = self._lock(name)
        if not lock.acquire(blocking=False):
            # Polled by hand, or held by an admin's pause: the next tick tries again.
            log.info("source=%s already being polled; skipped", name)
            self._end(name, token, done=False)
            return None
        # The states read with the claim, unless an admin held a source since (a pause
        # made meanwhile must be seen: the poll reads its state again then).
        states = loaded.states if loaded is not None and loaded.holds == self._holds else None
        try:
            if indexed.problem is not None:  # never fetched without its secrets
                outcome = self.poller.refuse(source, indexed.problem, lease=token)
            else:
                outcome = self.poller.poll_source(
                    source, self.pool, manual=manual, lease=token, states=states
                )
        except Exception:  # a bug must not kill the source's schedule; retry later
            log.exception("source=%s poll crashed", name)
            retry = self.clock() + timedelta(seconds=self.poller.policy.interval)
            self._end(name, token, next_poll=retry)
            return None
        finally:
            lock.release()
        if outcome.skipped:
            self._end(name, token, next_poll=None)  # paused or gone: it waits for a refresh
        elif syncs != self._syncs and not self._still_enabled(name):
            self.unschedule(name)  # removed while it was polled
        self._pass_ended()  # the static feeds before the hooks (which wait their debounce)
        self._changed(outcome.changes)
        if self.on_poll is not None:
            self.on_poll(outcome)
        full_text = indexed.problem is None and self.poller.resolved(source).full_text
        if not outcome.skipped and full_text:
            # Full text: after the poll is recorded and the next one set, on this job
            # thread (bounded by the job pool); a stop ends it between two pages.
            pages = self.poller.update_pages(source, self.pool, should_stop=lambda: self._stopping)
            if pages.changes.files or pages.changes.entries:
                self._pass_ended()  # the static feeds show the page's body
            self._changed(pages.changes)  # the articles it rewrote: the site rebuilds again
        return outcome

    def _still_enabled(self, name: str) -> bool:
        """Whether a source is in the index and enabled (a reload here may have removed
        or disabled it while it was polled; another process's sync is seen at its next
        claim, which ends without a poll)."""
        now = self._sources([name]).get(name)
        return now is not None and now.config.enabled

    def _changed(self, changes: Changes) -> None:
        """Tell the listeners of a poll's or rebuild's changes, if it made any."""
        if not (changes.files or changes.entries):
            return
        for listener in self.change_listeners:
            try:
                listener(changes)
            except Exception:  # a listener's bug must not cost the poll its schedule
                log.exception("a change listener failed")

    def _pass_ended(self) -> None:
        """After a poll, a rebuild or a reload: what follows a change of the entries (the
        static feeds; each does nothing when nothing changed since its last run). A
        poller without the posts folder writes no static feeds either: no shared files."""
        if not self.store.outbox:
            self.static.changed()

    # -- configuration changes -----------------------------------------------------------

    def _stamp(self) -> Stamp | None:
        """The config file's and its included files' sizes and times (``config_stamp``)."""
        return config_stamp(self.config_path, self.config.include)

    def sync_sources(self, config: Config) -> None:
        """Bring the index's table of sources in line with ``config`` (added, changed,
        removed). A database error is logged: the configuration stays in force."""
        self._syncs += 1
        try:
            done = self.store.sync_sources(config.sources, self.clock(), self._spread())
        except StoreError as exc:
            log.error("sources not synced to the index: %s", exc)
            return
        if done.added or done.changed or done.removed:
            log.info(
                "sources synced to the index: %d added, %d changed, %d removed",
                len(done.added),
                len(done.changed),
                len(done.removed),
            )

    def check_config(self) -> None:
        """Reload the configuration if its file, or a file it includes, changed."""
        stamp = self._stamp()
        if stamp is not None and stamp != self._config_stamp:
            self._config_stamp = stamp
            self.reload()

    def reload(self) -> bool:
        """Re-read the configuration and reschedule what changed.

        Returns:
            True when the new configuration is in force; False when it was refused.
        """
        with self._reload_lock:
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                self.last_reload_error = exc.report()
                log.error(
                    "config reload refused, the previous config keeps running:\n%s",
                    redact(exc.report()),
                )
                return False
            self.last_reload_error = None
            self.sync_sources(new)
            old = self.config
            for key in RESTART_SETTINGS:
                if getattr(old.settings, key) != getattr(new.settings, key):
                    log.warning("config: settings.%s changed; it takes effect on restart", key)
            old_poller = self.poller
            self.poller = Poller(
                new, self.store, clock=self.clock, rng=self.rng, workers=self.poller.workers
            )
            old_poller.close()  # its idle connections; polls in flight finish on theirs
            self.hooks.settings = new.settings.hooks  # from the next run on
            old_sources = {s.key: s for s in old.sources if s.enabled}
            new_sources = {s.key: s for s in new.sources if s.enabled}
            for name in old_sources.keys() - new_sources.keys():
                self.unschedule(name)
            changed = [
                s
                for name, s in new_sources.items()
                if name not in old_sources or old_sources[name] != s
            ]
            self._reschedule(changed)
            self._pass_ended()  # titles, outputs or the static folder may have changed
            log.info(
                "config reloaded: %d sources (%d added or changed, %d removed)",
                len(new_sources),
                len(changed),
                len(old_sources.keys() - new_sources.keys()),
            )
            return True
