"""The sources as configured, kept in the index's ``sources`` table beside their state.

``config.yaml`` (and the files it includes) stays the user's source of truth; at start and
on each reload ``sync_sources`` brings the table in line with it in one transaction:
sources added are inserted, changed ones (another fingerprint, or back after a removal)
updated, and those gone from the config marked ``removed_at`` (their articles and state
stay, as they always did). Unchanged rows are not written at all, so a reload of 100,000
sources that changed one writes one row.

Beside the settings, each row keeps what the paged overview (``store/overview.py``) lists,
sorts and searches: the source's ``position`` in config order (NULL once removed: the
overview lists the rows that have one), its category label, its URL redacted, and a
lowercased search text. A source that only moved in the list gets its position written,
nothing else.

Readers by key use ``source_settings``, ``source_keys`` and ``count_sources``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aggregator.models import Status
from aggregator.redact import redact
from aggregator.store.schema import category_path, sources_table

if TYPE_CHECKING:
    from aggregator.config import SourceConfig

BATCH = 5000  # rows per executemany: bounds the memory of one statement's parameters


@dataclass(frozen=True, slots=True)
class SourceSync:
    """What a sync changed: the keys added, changed and removed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def source_row(source: SourceConfig) -> dict[str, Any]:
    """A source's configuration columns (secret values left out: the fingerprint shows
    that they changed, through scrypt; ``fetch_options`` names those that are set)."""
    # The fingerprint's JSON, made once per source, with the names of the fetch options
    # set: one serialisation per source, not two. No option's value, the User-Agent's
    # neither: a private feed's may carry an account name, and no fetch option's value
    # reaches the index (tests/test_fetch_options.py).
    extra = json.dumps(
        {"fetch_options": list(source.fetch_options_set())},
        ensure_ascii=False,
        separators=(",", ":"),
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

    def sync_sources(self, sources: Sequence[SourceConfig], now: datetime) -> SourceSync:
        """Make the table's configured sources those of ``sources``, in one transaction.

        One read of the stored keys, fingerprints and positions, then batched inserts and
        updates of only what differs: a source whose settings are unchanged but whose
        place in the list moved gets its position alone.
        """
        t = sources_table
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
                if have is None:
                    row = {"name": source.key, "added_at": now, "position": position}
                    added.append(row | source_row(source))
                elif (
                    have.fingerprint != source.fingerprint()
                    or have.removed_at is not None
                    or not have.listed  # written before the overview's columns were
                ):
                    changed.append(
                        {"b_name": source.key, "position": position} | source_row(source)
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
            update = (
                sa.update(t)
                .where(t.c.name == sa.bindparam("b_name"))
                .values(removed_at=None, added_at=sa.func.coalesce(t.c.added_at, stamp))
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
                .values(removed_at=sa.func.coalesce(t.c.removed_at, stamp), position=None)
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
