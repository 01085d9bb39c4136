"""The sources as configured, kept in the index's ``sources`` table beside their state.

``config.yaml`` (and the files it includes) stays the user's source of truth; at start and
on each reload ``sync_sources`` brings the table in line with it in one transaction:
sources added are inserted, changed ones (another fingerprint, or back after a removal)
updated, and those gone from the config marked ``removed_at`` (their articles and state
stay, as they always did). Unchanged rows are not written at all, so a reload of 100,000
sources that changed one writes one row.

Everything else reads its sources from here, by key: the claim loop's polls, the
admin's refresh, pause and resume, a source's page, ``aggregator poll`` and the dry runs
(``sources_by_key``, one query for a batch), and the lists (``source_keys``,
``count_sources``). A process may read a source that its own config never had (issue 14:
pollers and web replicas that did not load the file another process synced): the row's
settings are validated again into a ``SourceConfig``, once per fingerprint (an LRU).

Fetch options (the secret ``headers``, ``username``, ``password``, ``proxy``, and
``user_agent``, which may carry a key) are never stored: the row only names those set.
They come from the reading process's own config, and only when its source has the row's
fingerprint (the same settings, secrets included). When the row names options this
process does not have, the source comes back with ``missing`` set, and the caller must
not fetch it (a request without its login, or not through its proxy, fails obscurely
or goes where it must not): the scheduler records the error on the source instead.

Beside the settings, each row keeps what the paged overview (``store/overview.py``) lists,
sorts and searches: the source's ``position`` in config order (NULL once removed: the
overview lists the rows that have one), its category label, its URL redacted, and a
lowercased search text. A source that only moved in the list gets its position written,
nothing else.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from aggregator.config import FETCH_OPTIONS, Config, SourceConfig
from aggregator.models import Status
from aggregator.redact import redact
from aggregator.store.claims import CONFIG, HELD
from aggregator.store.schema import category_path, sources_table

log = logging.getLogger(__name__)

BATCH = 5000  # rows per executemany: bounds the memory of one statement's parameters
KEYS_PER_QUERY = 500  # keys per IN (...) of sources_by_key (SQLite's parameter limit)
VALIDATED_CACHE = 16384  # SourceConfigs rebuilt from rows, kept by fingerprint


@dataclass(frozen=True, slots=True)
class IndexedSource:
    """A configured source as the index has it (not removed), by key."""

    #: Its validated settings: this process's own object when its config has the row's
    #: fingerprint (secrets included), else rebuilt from the row (no secret values).
    config: SourceConfig
    #: The fingerprint of the settings last synced (the row's).
    fingerprint: str
    #: Fetch options (secrets, user agent) the row names that ``config`` lacks: never
    #: fetch without them.
    missing: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The source's name."""
        return self.config.key

    @property
    def problem(self) -> str | None:
        """Why this process must not poll the source (None: it may)."""
        if not self.missing:
            return None
        return (
            f"its secret fetch options ({', '.join(self.missing)}: never stored in the "
            "index) are not in this process's config; reload"
        )


class ValidatedSources:
    """SourceConfigs rebuilt from rows' settings, by fingerprint (an LRU, thread-safe):
    a steady source is validated once, not on every poll."""

    def __init__(self, size: int = VALIDATED_CACHE) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[SourceConfig, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, fingerprint: str, settings: str) -> tuple[SourceConfig, tuple[str, ...]]:
        """The source of a row's ``settings`` JSON and the fetch options it names.

        Raises:
            ValidationError: the settings do not validate in this version.
        """
        with self._lock:
            found = self._items.get(fingerprint)
            if found is not None:
                self._items.move_to_end(fingerprint)
                return found
        made = settings_source(settings)
        with self._lock:
            self._items[fingerprint] = made
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return made


def settings_source(settings: str) -> tuple[SourceConfig, tuple[str, ...]]:
    """A ``SourceConfig`` from a row's settings JSON (``source_row``'s), and the fetch
    options the row says are set (their values are not in it)."""
    data = json.loads(settings)
    named = data.pop("fetch_options", ())
    data.pop("user_agent", None)  # rows synced before it was left out
    return SourceConfig.model_validate(data), tuple(n for n in named if n in FETCH_OPTIONS)


@dataclass(frozen=True, slots=True)
class SourceSync:
    """What a sync changed: the keys added, changed and removed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


NO_FETCH_OPTIONS = '{"fetch_options":[]}'  # json.dumps's, as above, made once


def source_row(source: SourceConfig) -> dict[str, Any]:
    """A source's configuration columns (fetch option values left out: the fingerprint
    shows that they changed, through scrypt; ``fetch_options`` names those that are set).

    ``user_agent`` is left out too: it is no secret in the config's sense, but one may
    carry a key (``tests/test_fetch_options.py`` keeps it out of the index).
    """
    # The fingerprint's JSON, made once per source, with the names of the fetch options
    # set: one serialisation per source, not two.
    named = source.fetch_options_set()
    extra = (
        json.dumps({"fetch_options": list(named)}, ensure_ascii=False, separators=(",", ":"))
        if named
        else NO_FETCH_OPTIONS
    )
    label = " › ".join(source.categories)
    shown = redact(source.url)
    return {
        "url": source.url,
        "settings": source.plain_settings[:-1] + "," + extra[1:],
        "fingerprint": source.fingerprint(),
        "enabled": source.enabled,
        "category_path": category_path(source.categories),
        "host": None if source.is_local else _host(source.url),
        "label": label,
        "url_shown": shown,
        # What a visitor's search looks in (the feed's title apart: polls write it).
        "search": f"{source.key}\n{label}\n{shown}".lower(),
    }


def _host(url: str) -> str | None:
    """The host of a validated http(s) URL, lowercased (urlsplit's, ten times faster)."""
    netloc = url.split("/", 3)[2].partition("?")[0].partition("#")[0].rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")].lower() or None
    return netloc.partition(":")[0].lower() or None


class Catalog:
    """The store's side of the configured sources (a part of ``Store``)."""

    #: The sources the last ``sync_sources`` of this store wrote (the web app syncs a
    #: configuration only when no one did: ``AppState.listed``).
    synced_sources: Sequence[SourceConfig] | None = None

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[Connection]: ...
        def reading(self) -> AbstractContextManager[Connection]: ...

    @functools.cached_property
    def validated_sources(self) -> ValidatedSources:
        """The sources rebuilt from rows, by fingerprint (one cache per store)."""
        return ValidatedSources()

    def sources_by_key(
        self, keys: Iterable[str], local: Config | None = None
    ) -> dict[str, IndexedSource]:
        """The configured sources (not removed) of ``keys``, by key; unknown, removed and
        never synced keys are left out. One query per ``KEYS_PER_QUERY`` keys.

        Args:
            keys: the sources' names.
            local: this process's configuration: its source is used as it is (secrets
                included) when it has the row's fingerprint.
        """
        t = sources_table
        wanted = list(dict.fromkeys(keys))
        rows: list[sa.Row[str, str, str]] = []
        with self.reading() as conn:
            for start in range(0, len(wanted), KEYS_PER_QUERY):
                rows += conn.execute(
                    sa.select(t.c.name, t.c.settings, t.c.fingerprint).where(
                        t.c.name.in_(wanted[start : start + KEYS_PER_QUERY]),
                        t.c.settings.is_not(None),
                        t.c.removed_at.is_(None),
                    )
                ).all()
        found: dict[str, IndexedSource] = {}
        for name, settings, fingerprint in rows:
            own = local.source(name) if local is not None else None
            if own is not None and own.fingerprint() == fingerprint:
                found[name] = IndexedSource(own, fingerprint)
                continue
            try:
                config, named = self.validated_sources.get(fingerprint, settings)
            except (ValidationError, ValueError) as exc:  # a newer version's settings
                log.error("source=%s its settings in the index do not validate: %s", name, exc)
                continue
            # Not this process's source, or another version of it: none of its own
            # secrets is known to be the synced one's.
            found[name] = IndexedSource(config, fingerprint, named)
        return found

    def source_by_key(self, key: str, local: Config | None = None) -> IndexedSource | None:
        """One configured source by key (``sources_by_key``); None: unknown or removed."""
        return self.sources_by_key([key], local).get(key)

    def sync_sources(
        self,
        sources: Sequence[SourceConfig],
        now: datetime,
        due: Callable[[], datetime] | None = None,
    ) -> SourceSync:
        """Make the table's configured sources those of ``sources``, in one transaction.

        One read of the stored keys, fingerprints and positions, then batched inserts and
        updates of only what differs: a source whose settings are unchanged but whose
        place in the list moved gets its position alone. An enabled source added (or
        changed, or back) without a next-poll time is due at ``due()`` (each call one
        source's time: a service spreads its start over ``startup_spread``), else ``now``,
        so every poller's claim loop takes it, even one that never loaded this config; a
        removed one gets none. A paused or gone source whose settings changed is woken
        (``claims.CONFIG``): it is polled again at its time.
        """
        t = sources_table
        when = due or (lambda: now)
        with self.transaction() as conn:
            stored = {
                row.name: row
                for row in conn.execute(
                    sa.select(
                        t.c.name,
                        t.c.fingerprint,
                        t.c.removed_at,
                        t.c.position,
                        t.c.search.is_not(None).label("listed"),
                    )
                )
            }
            added: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            moved: list[dict[str, Any]] = []
            for position, source in enumerate(sources):
                have = stored.get(source.key)
                at = when() if source.enabled else None
                if have is None:
                    row = {"name": source.key, "added_at": now, "position": position}
                    added.append(row | {"next_poll_at": at} | source_row(source))
                elif (
                    (edited := have.fingerprint != source.fingerprint())
                    or have.removed_at is not None
                    or not have.listed  # written before the overview's columns were
                ):
                    changed.append(
                        {
                            "b_name": source.key,
                            "b_due": at,
                            "b_wake": CONFIG if edited and source.enabled else None,
                            "position": position,
                        }
                        | source_row(source)
                    )
                elif have.position != position:
                    moved.append({"b_name": source.key, "b_position": position})
            keys = {source.key for source in sources}
            removed = [
                name
                for name, row in stored.items()
                if name not in keys and (row.removed_at is None or row.position is not None)
            ]
            for batch in _batches(added):
                conn.execute(sa.insert(t), batch)
            # Typed: inside coalesce() a bare datetime would be bound untyped, not as
            # the column's ISO text.
            stamp = sa.literal(now, t.c.added_at.type)
            # The configuration columns come from each row's parameters.
            due_at = sa.bindparam("b_due", type_=t.c.next_poll_at.type)
            # A held source whose settings changed: due at its new time, and woken.
            wake = sa.bindparam("b_wake", type_=t.c.wake.type)
            woken = sa.and_(wake.is_not(None), sa.or_(*(t.c.status == value for value in HELD)))
            update = (
                sa.update(t)
                .where(t.c.name == sa.bindparam("b_name"))
                .values(
                    removed_at=None,
                    added_at=sa.func.coalesce(t.c.added_at, stamp),
                    next_poll_at=sa.case(
                        (woken, due_at), else_=sa.func.coalesce(t.c.next_poll_at, due_at)
                    ),
                    wake=sa.case((woken, wake), else_=t.c.wake),
                )
            )
            for batch in _batches(changed):
                conn.execute(update, batch)
            move = (
                sa.update(t)
                .where(t.c.name == sa.bindparam("b_name"))
                .values(position=sa.bindparam("b_position"))
            )
            for batch in _batches(moved):
                conn.execute(move, batch)
            gone = (
                sa.update(t)
                .where(t.c.name == sa.bindparam("b_name"))
                .values(
                    removed_at=sa.func.coalesce(t.c.removed_at, stamp),
                    position=None,
                    next_poll_at=None,
                )
            )
            for batch in _batches([{"b_name": name} for name in removed]):
                conn.execute(gone, batch)
        self.synced_sources = sources
        return SourceSync(
            tuple(row["name"] for row in added),
            tuple(row["b_name"] for row in changed),
            tuple(name for name in removed if stored[name].removed_at is None),
        )

    def source_settings(self, key: str) -> dict[str, Any] | None:
        """A configured source's row by key: its ``settings`` (the validated settings as
        a dict, secret values left out), ``url``, ``fingerprint``, ``enabled``,
        ``categories`` (a tuple), ``host``, ``added_at``, ``removed_at``, and its state
        (``status`` a ``Status``, ``next_poll_at``, ...). None: never synced or unknown."""
        t = sources_table
        with self.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == key)).first()
        if row is None or row.settings is None:
            return None
        values = dict(row._mapping)
        values["settings"] = json.loads(row.settings)
        values["categories"] = tuple(row.category_path.split("\x1f"))
        values["status"] = Status(values["status"] or Status.NEW)
        return values

    def source_keys(
        self,
        *,
        status: Status | None = None,
        category: Sequence[str] = (),
        enabled: bool | None = None,
        removed: bool = False,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[str]:
        """Keys of configured sources, in key order: in a state (``Status.NEW`` includes
        never polled), under a category path (any level: its prefix), enabled or not;
        without ``removed``, only those in the config now. ``after`` and ``limit`` page
        through them (keyset: the last key of the page before)."""
        t = sources_table
        query = sa.select(t.c.name).where(_configured(status, category, enabled, removed))
        if after is not None:
            query = query.where(t.c.name > after)
        query = query.order_by(t.c.name)
        if limit is not None:
            query = query.limit(limit)
        with self.reading() as conn:
            return list(conn.execute(query).scalars())

    def count_sources(
        self,
        *,
        status: Status | None = None,
        category: Sequence[str] = (),
        enabled: bool | None = None,
        removed: bool = False,
    ) -> int:
        """How many configured sources ``source_keys`` would list (without paging)."""
        t = sources_table
        query = sa.select(sa.func.count()).select_from(t)
        query = query.where(_configured(status, category, enabled, removed))
        with self.reading() as conn:
            return int(conn.execute(query).scalar_one())


def _configured(
    status: Status | None, category: Sequence[str], enabled: bool | None, removed: bool
) -> sa.ColumnElement[bool]:
    t = sources_table
    clauses: list[sa.ColumnElement[bool]] = [t.c.settings.is_not(None)]
    clauses.append(t.c.removed_at.is_not(None) if removed else t.c.removed_at.is_(None))
    if status is Status.NEW:
        clauses.append(sa.or_(t.c.status.is_(None), t.c.status == Status.NEW.value))
    elif status is not None:
        clauses.append(t.c.status == status.value)
    if category:
        path = category_path(category)
        # The path itself, or below it: a prefix up to a separator (no LIKE: names may
        # hold % or _).
        below = path + "\x1f"
        clauses.append(
            sa.or_(
                t.c.category_path == path,
                sa.func.substr(t.c.category_path, 1, len(below)) == below,
            )
        )
    if enabled is not None:
        clauses.append(t.c.enabled.is_(enabled))
    return sa.and_(*clauses)


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]
