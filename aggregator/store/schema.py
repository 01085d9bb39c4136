"""The index's tables (SQLAlchemy Core), as this version uses them.

A change here needs a revision in ``migrations/versions/`` that makes it in the databases
already made (``tests/test_migrations.py`` fails until one does): docs/ARCHITECTURE.md,
"Schema changes".
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from aggregator.content.convert import fold_path

# The last schema version made by hand, before Alembic: kept in ``meta`` for good, so that
# an older release knows it meets a newer index (``store/migrate.py``).
SCHEMA_VERSION = 4


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes: on SQLite ISO 8601 text, which sorts in time order; on
    PostgreSQL its own ``timestamp with time zone``.

    Called without a dialect (``dialect`` None) it converts to and from the text, as
    ``meta`` keeps the last change's time.
    """

    impl = sa.String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.String(32))

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect | None
    ) -> str | datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        if _native_time(dialect):
            return value.astimezone(UTC)
        # isoformat pads the year to four digits, so the text sorts in time order.
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(
        self, value: str | datetime | None, dialect: Dialect | None
    ) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):  # PostgreSQL's, in the session's time zone
            return value.astimezone(UTC)
        return datetime.fromisoformat(value)


def _native_time(dialect: Dialect | None) -> bool:
    return dialect is not None and dialect.name == "postgresql"


#: Surrogate keys and the change sequence: 64-bit on PostgreSQL (at 500 polls/s a 32-bit
#: ``polls.id`` runs out within two months, ``seq`` at 100 writing transactions/s within
#: a year); SQLite's INTEGER is 64-bit already, and must be spelled INTEGER for a key to
#: be the rowid.
Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Category paths: compared byte by byte everywhere. A category and those below it are
#: the range ``path`` < x < ``path + "\x20"`` only in that order (SQLite's, and the C
#: locale's); a natural language's collation, PostgreSQL's usual default, ignores the
#: separator (\x1f) and would find nothing.
PathText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

metadata = sa.MetaData()

sources_table = sa.Table(
    "sources",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("url", sa.String, nullable=False),
    sa.Column("title", sa.String),  # the feed's own title, as last seen
    sa.Column("last_polled_at", UTCDateTime),
    sa.Column("last_ok_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("etag", sa.String),
    sa.Column("last_modified", sa.String),
    sa.Column("body_hash", sa.String),  # of the last body fully processed (with render key)
    sa.Column("render_key", sa.String),  # the render settings and version it was processed with
    sa.Column("status", sa.String),  # models.Status
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),  # in a row
    sa.Column("next_poll_at", UTCDateTime),  # survives restarts
    sa.Column("interval", sa.Float),  # the delay last chosen, seconds
    sa.Column("moved_to", sa.Text),  # target of the last permanent redirect
    sa.Column("reason", sa.Text),  # why it is paused or gone
    sa.Column("config_hash", sa.String),  # the source's settings when last polled
    sa.Column("last_http_status", sa.Integer),
    sa.Column("feed_hint", sa.Float),  # the feed's <ttl>/sy: interval, seconds, as last parsed
    # The claim loop (store/claims.py): a claimed source's lease, and why it is claimable
    # although paused or gone ("manual": a refresh; "config": its settings changed).
    sa.Column("lease_until", UTCDateTime),
    sa.Column("lease_token", sa.String),
    sa.Column("wake", sa.String),
    # The source as configured, synced from the config at start and on reload
    # (``store/catalog.py``); NULL in rows written before the sync or never synced.
    sa.Column("settings", sa.Text),  # its validated settings, JSON; secret values left out
    sa.Column("fingerprint", sa.String),  # SourceConfig.fingerprint() of those settings
    sa.Column("enabled", sa.Boolean),
    sa.Column("category_path", PathText),  # categories joined by US (\x1f), for prefix queries
    sa.Column("host", sa.String),  # the URL's host, lowercased; NULL for a local file
    sa.Column("added_at", UTCDateTime),  # first synced
    sa.Column("removed_at", UTCDateTime),  # gone from the config (its articles are kept)
    # What the overview lists, sorts and searches (store/overview.py), also synced:
    sa.Column("position", sa.Integer),  # in config order, 0..n-1; NULL: not in the config
    sa.Column("label", sa.Text),  # the categories joined by " › "
    sa.Column("url_shown", sa.Text),  # the URL redacted: what a visitor sees and searches
    sa.Column("search", sa.Text),  # name, label and url_shown, lowercased, one per line
    sa.Index("ix_sources_category_path", "category_path"),
    sa.Index("ix_sources_next_poll_at", "next_poll_at", "name"),  # the claim's order
    # The leases held (few): partial, so the planner never takes it for "not leased".
    sa.Index(
        "ix_sources_leased",
        "lease_until",
        sqlite_where=sa.text("lease_token IS NOT NULL"),
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    ),
)
# The overview (store/overview.py) pages, filters, sorts and counts the listed sources
# (``position`` set) along these, never by a scan and a sort of every source:
# config order; the counts by state and each state's page in config order; the disabled;
# the most failures in a row first (and the worst, for /healthz: those, then the longest
# without a good poll, a sort within each count of failures); newest poll first; the
# names in order; and a search, scanning this narrow index, not the table's wide rows.
sa.Index("ix_sources_position", sources_table.c.position)
sa.Index(
    "ix_sources_state",
    sources_table.c.status,
    sources_table.c.enabled,
    sources_table.c.position,
)
# Partial: the planner, knowing nothing of how few are disabled, would take an index on
# ``enabled`` for "enabled = 1" too.
sa.Index(
    "ix_sources_disabled",
    sources_table.c.position,
    sqlite_where=sa.text("enabled = 0"),
    postgresql_where=sa.text("NOT enabled"),
)
sa.Index("ix_sources_failures", sources_table.c.failures.desc(), sources_table.c.position)
sa.Index("ix_sources_polled", sources_table.c.last_polled_at, sources_table.c.position)
sa.Index("ix_sources_name", sources_table.c.name, sources_table.c.position)
# SQLite only: a B-tree entry on PostgreSQL holds at most 2,704 bytes, and a long URL
# (twice in it: in full, and in the search text) made a source's row impossible to
# write; there a search reads the table (pg_trgm's GIN index would be the way to index it).
sa.Index(
    "ix_sources_search",
    sources_table.c.search,
    sources_table.c.title,
    sources_table.c.url,  # the admin searches the URLs in full
    sources_table.c.position,
    sources_table.c.name,
).ddl_if(dialect="sqlite")
entries_table = sa.Table(
    "entries",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("key", sa.String, nullable=False),  # identity inside the source
    sa.Column("alt_key", sa.String, nullable=False),  # see convert.assign_keys
    sa.Column("uid", sa.String, nullable=False, unique=True),  # global, permanent
    sa.Column("path", sa.String, unique=True),  # relative to posts_dir; NULL once pruned
    sa.Column("title", sa.Text),
    sa.Column("link", sa.Text),
    sa.Column("author", sa.String),  # the site's name
    sa.Column("authors", sa.Text),  # JSON list of {name, email, url}: the entry's own; NULL: none
    sa.Column("enclosures", sa.Text),  # JSON list of {url, type, length}; NULL: none
    sa.Column("categories", sa.Text),  # JSON list
    sa.Column("tags", sa.Text),  # JSON list
    sa.Column("headimg", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Column("body_html", sa.Text),
    sa.Column("published", UTCDateTime),  # as the feed said, if it did
    sa.Column("updated", UTCDateTime),
    sa.Column("date", UTCDateTime, nullable=False),  # published, else updated, else first seen
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("raw_json", sa.Text),  # the entry as parsed, for rebuilds
    sa.Column("raw_hash", sa.String),
    sa.Column("file_hash", sa.String),  # sha1 of the article file as written
    sa.Column("render_key", sa.String),  # settings the file was rendered with
    sa.Column("pruned_at", UTCDateTime),  # set: removed by retention, never brought back
    sa.Column("dropped_by", sa.Text),  # set: a rule dropped it (the audit); no file
    sa.Column("dropped_at", UTCDateTime),
    sa.Column("category_path", PathText),  # categories joined by US (\x1f), for prefix queries
    sa.Column("path_fold", sa.Text),  # convert.fold_path(path): a new name must not share it
    # The change that last wrote the row (insert, update, prune, drop): the store's change
    # sequence, one number per write transaction in commit order, and that change's time.
    # A feed's version is the newest change in its categories (``Queries.feed_version``).
    sa.Column("seq", Int64, nullable=False, server_default="0"),
    sa.Column("changed_at", UTCDateTime),
    sa.UniqueConstraint("source", "key"),
    sa.Index("ix_entries_source_date", "source", "date"),
    sa.Index("ix_entries_category_date", "category_path", "date"),
    sa.Index("ix_entries_date", "date"),
    sa.Index("ix_entries_path_fold", "path_fold"),
    sa.Index("ix_entries_category_seq", "category_path", "seq"),
)

# The newest change that took an entry out of a category path (its categories changed):
# the newest change among a category's entries cannot show that one left it. Written by
# the trigger ``entries_departures`` (made by the baseline revision,
# ``migrations/versions/r0001_baseline.py``), never by Python; one row per category path
# ever left.
departures_table = sa.Table(
    "departures",
    metadata,
    sa.Column("category_path", PathText, primary_key=True),
    sa.Column("seq", Int64, nullable=False),
    sa.Column("changed_at", UTCDateTime),
)

CATEGORY_SEPARATOR = "\x1f"

polls_table = sa.Table(
    "polls",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("source", sa.String, nullable=False, index=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("new", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("unchanged", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("dropped", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("warnings", sa.Text),  # JSON list
    sa.Column("url", sa.Text),
    sa.Column("http_status", sa.Integer),
    sa.Column("bytes", sa.Integer),
    sa.Column("not_modified", sa.Boolean),
    sa.Column("moved_to", sa.Text),
)

# What the hooks did (``aggregator/hooks.py``): one row per command run or webhook
# delivery, the last ``HOOK_HISTORY`` kept, for the dashboard.
hook_runs_table = sa.Table(
    "hook_runs",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),  # "command", "webhook" or "export"
    sa.Column("target", sa.Text, nullable=False),  # the command, or the URL redacted
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),  # seconds
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("exit_code", sa.Integer),  # a command's; a webhook's last HTTP status
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("files", sa.Integer, nullable=False, server_default="0"),  # or entries sent
    sa.Column("error", sa.Text),  # timed out, could not start, connection refused...
    sa.Column("output", sa.Text),  # a command's stdout and stderr, its last bytes
)

# Each claim's lateness (claim time - next_poll_at), for /metrics and the dashboard; rows
# older than an hour are dropped as new ones come (store/claims.py).
claims_table = sa.Table(
    "claims",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("claimed_at", UTCDateTime, nullable=False),
    sa.Column("late", sa.Float, nullable=False),  # seconds
    # The window's rows and their lateness, read from the index alone (claims.lateness).
    sa.Index("ix_claims_window", "claimed_at", "late"),
)

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String),
)

# Secrets the service makes for itself (the session signing key): apart from ``meta``,
# whose rows /metrics reads.
secrets_table = sa.Table(
    "secrets",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)

# Logged-in admin sessions: the cookie names one, and only a row here makes it valid, so
# logging out (deleting the row) ends the session wherever the cookie was copied.
admin_sessions_table = sa.Table(
    "admin_sessions",
    metadata,
    sa.Column("id", sa.String, primary_key=True),  # random; carried in the signed cookie
    sa.Column("secret_mark", sa.String, nullable=False),  # which admin secret logged in
    sa.Column("created_at", UTCDateTime, nullable=False),
)


# Full text: the web page of each entry of a `full_text` source, fetched once and kept raw
# (zlib), so that a rebuild extracts again without fetching; and what the last extraction
# did with it. A row, even one whose fetch failed, means "fetched": only a refetch asks again.
pages_table = sa.Table(
    "pages",
    metadata,
    sa.Column("source", sa.String, nullable=False),
    sa.Column("key", sa.String, nullable=False),  # the entry's key in its source
    sa.Column("url", sa.Text),  # the final URL, after redirects (the base of relative links)
    sa.Column("fetched_at", UTCDateTime, nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("content_type", sa.Text),
    sa.Column("body", sa.LargeBinary),  # zlib-compressed page; NULL: the fetch failed
    sa.Column("error", sa.Text),  # why the fetch failed
    sa.Column("body_from", sa.String),  # "page" or "feed": where the article's body came from
    sa.Column("reason", sa.Text),  # why the feed's own body was kept
    sa.Column("applied_hash", sa.String),  # the entry's raw_hash when that was decided
    sa.PrimaryKeyConstraint("source", "key"),
)


# Article changes for the exporter (``aggregator export``, ``store/outbox.py``), written
# by a poller without the posts folder in the transaction that writes the entry rows;
# deleted by the exporter once their files are written. Applied in ``id`` order.
outbox_table = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("op", sa.String, nullable=False),  # "write" or "delete"
    sa.Column("path", sa.String, nullable=False),  # relative to posts_dir, as decided
    sa.Column("uid", sa.String, nullable=False),  # the entry's entry_id
    sa.Column("text", sa.Text),  # the article file's text (a write)
    sa.Column("change", sa.String),  # "new" or "updated" upstream (the webhooks'); NULL: none
    sa.Column("seq", Int64, nullable=False),  # the writing transaction's change number
    sa.Column("created_at", UTCDateTime, nullable=False),
)


# One-at-a-time jobs (a rebuild, a prune), asked for from any process: a web replica's
# button writes a row, a process with pollers runs it under the jobs lock
# (``store/jobs.py``), and every replica shows how it went from here.
jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Int64, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),  # "rebuild" or "prune"
    sa.Column("state", sa.String, nullable=False),  # "pending", "running", "done", "failed"
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("requested_by", sa.String, nullable=False),  # "dashboard", "command", ...
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("runner", sa.String),  # host and process that ran it
    sa.Column("result", sa.Text),  # JSON: what it did, or why it stopped
    sa.Index("ix_jobs_kind", "kind", "id"),
    # At most one waiting job of a kind: a second click finds it there.
    sa.Index(
        "ix_jobs_one_pending",
        "kind",
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    ),
)


def kept() -> sa.ColumnElement[bool]:
    """The entries that are published: not pruned, not dropped by a rule."""
    t = entries_table
    return sa.and_(t.c.pruned_at.is_(None), t.c.dropped_by.is_(None))


def category_path(categories: Sequence[str]) -> str:
    """The stored form of a category path (a prefix of it is a prefix of the string)."""
    return CATEGORY_SEPARATOR.join(categories)


def fill_path_folds(conn: Connection, batch: int = 5000) -> None:
    """Compute again the fold (``convert.fold_path``) of every stored path.

    The fold is Python's (no database knows Unicode categories and case folding as
    Python does). SQLite calls it itself: one statement, no row goes through SQLAlchemy.
    Elsewhere (a migration on PostgreSQL) the paths are read and their folds written back
    ``batch`` rows at a time.
    """
    if conn.dialect.name != "sqlite":
        e = entries_table
        rows = conn.execute(sa.select(e.c.id, e.c.path).order_by(e.c.id)).all()
        update = (
            sa.update(e).where(e.c.id == sa.bindparam("row")).values(path_fold=sa.bindparam("fold"))
        )
        for start in range(0, len(rows), batch):
            conn.execute(
                update,
                [
                    {"row": i, "fold": _fold_or_none(path)}
                    for i, path in rows[start : start + batch]
                ],
            )
        return
    sqlite = conn.connection.driver_connection
    assert isinstance(sqlite, sqlite3.Connection)
    sqlite.create_function("aggregator_fold_path", 1, _fold_or_none, deterministic=True)
    conn.execute(sa.text("UPDATE entries SET path_fold = aggregator_fold_path(path)"))


def _fold_or_none(path: str | None) -> str | None:
    return None if path is None else fold_path(path)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    _write_ahead_log(cursor)  # readers (the web app) never block the poller
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: Any, patience: float = 30.0) -> None:
    """Turn on WAL, waiting for the file if another process holds it.

    Switching needs the file to itself for a moment and SQLite does not wait for that
    (the busy timeout is not used): processes opening a new database together would
    see "database is locked". Once on, WAL stays on: it is kept in the file.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
