"""The baseline: the schema as it was at version 4, the last one made by hand.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

A database made before Alembic (``meta.schema_version`` 1 to 4, no ``alembic_version``)
is brought to this revision by ``store/migrate.py``'s legacy step and stamped with it.

Types are spelled out here, not taken from ``schema.py``: a later change there must never
change what this revision makes. On PostgreSQL times are ``TIMESTAMP WITH TIME ZONE``, the
surrogate ids and change numbers ``BIGINT``, category paths ``COLLATE "C"``; on SQLite,
ISO 8601 text and ``INTEGER`` (for an id, the rowid).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's INTEGER: the rowid
# Category paths compare byte by byte (the C collation): a prefix is a range only so.
PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

# The newest change that took an entry out of a category path (see schema.py).
SQLITE_DEPARTURES_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS entries_departures "
    "AFTER UPDATE OF category_path ON entries "
    "WHEN OLD.category_path IS NOT NEW.category_path AND OLD.category_path IS NOT NULL "
    "BEGIN INSERT OR REPLACE INTO departures (category_path, seq, changed_at) "
    "VALUES (OLD.category_path, NEW.seq, NEW.changed_at); END"
)
POSTGRESQL_DEPARTURES_FUNCTION = """
CREATE OR REPLACE FUNCTION entries_departures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO departures (category_path, seq, changed_at)
    VALUES (OLD.category_path, NEW.seq, NEW.changed_at)
    ON CONFLICT (category_path)
    DO UPDATE SET seq = EXCLUDED.seq, changed_at = EXCLUDED.changed_at;
    RETURN NULL;
END
$$
"""
POSTGRESQL_DEPARTURES_TRIGGER = (
    "CREATE TRIGGER entries_departures AFTER UPDATE OF category_path ON entries FOR EACH ROW "
    "WHEN (OLD.category_path IS DISTINCT FROM NEW.category_path "
    "AND OLD.category_path IS NOT NULL) EXECUTE FUNCTION entries_departures()"
)


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("secret_mark", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "claims",
        sa.Column("id", INT64, nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.Column("late", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claims_window", "claims", ["claimed_at", "late"])

    op.create_table(
        "departures",
        sa.Column("category_path", PATH, nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("changed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("category_path"),
    )
    op.create_table(
        "entries",
        sa.Column("id", INT64, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("alt_key", sa.String(), nullable=False),
        sa.Column("uid", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("author", sa.String(), nullable=True),
        sa.Column("authors", sa.Text(), nullable=True),
        sa.Column("enclosures", sa.Text(), nullable=True),
        sa.Column("categories", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("headimg", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("published", TIME, nullable=True),
        sa.Column("updated", TIME, nullable=True),
        sa.Column("date", TIME, nullable=False),
        sa.Column("first_seen", TIME, nullable=False),
        sa.Column("last_seen", TIME, nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.Column("raw_hash", sa.String(), nullable=True),
        sa.Column("file_hash", sa.String(), nullable=True),
        sa.Column("render_key", sa.String(), nullable=True),
        sa.Column("pruned_at", TIME, nullable=True),
        sa.Column("dropped_by", sa.Text(), nullable=True),
        sa.Column("dropped_at", TIME, nullable=True),
        sa.Column("category_path", PATH, nullable=True),
        sa.Column("path_fold", sa.Text(), nullable=True),
        sa.Column("seq", INT64, server_default="0", nullable=False),
        sa.Column("changed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path"),
        sa.UniqueConstraint("source", "key"),
        sa.UniqueConstraint("uid"),
    )
    op.create_index("ix_entries_category_date", "entries", ["category_path", "date"])
    op.create_index("ix_entries_category_seq", "entries", ["category_path", "seq"])
    op.create_index("ix_entries_date", "entries", ["date"])
    op.create_index("ix_entries_path_fold", "entries", ["path_fold"])
    op.create_index("ix_entries_source_date", "entries", ["source", "date"])

    op.create_table(
        "hook_runs",
        sa.Column("id", INT64, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("files", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "pages",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("fetched_at", TIME, nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("body_from", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("applied_hash", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("source", "key"),
    )
    op.create_table(
        "polls",
        sa.Column("id", INT64, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=True),
        sa.Column("not_modified", sa.Boolean(), nullable=True),
        sa.Column("moved_to", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_polls_source", "polls", ["source"])

    op.create_table(
        "secrets",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "sources",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("last_polled_at", TIME, nullable=True),
        sa.Column("last_ok_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("etag", sa.String(), nullable=True),
        sa.Column("last_modified", sa.String(), nullable=True),
        sa.Column("body_hash", sa.String(), nullable=True),
        sa.Column("render_key", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_poll_at", TIME, nullable=True),
        sa.Column("interval", sa.Float(), nullable=True),
        sa.Column("moved_to", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("config_hash", sa.String(), nullable=True),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("feed_hint", sa.Float(), nullable=True),
        sa.Column("lease_until", TIME, nullable=True),
        sa.Column("lease_token", sa.String(), nullable=True),
        sa.Column("wake", sa.String(), nullable=True),
        sa.Column("settings", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("category_path", PATH, nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("added_at", TIME, nullable=True),
        sa.Column("removed_at", TIME, nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("url_shown", sa.Text(), nullable=True),
        sa.Column("search", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_sources_category_path", "sources", ["category_path"])
    op.create_index(
        "ix_sources_disabled",
        "sources",
        ["position"],
        sqlite_where=sa.text("enabled = 0"),
        postgresql_where=sa.text("NOT enabled"),
    )
    op.create_index(
        "ix_sources_failures", "sources", [sa.literal_column("failures DESC"), "position"]
    )
    op.create_index(
        "ix_sources_leased",
        "sources",
        ["lease_until"],
        sqlite_where=sa.text("lease_token IS NOT NULL"),
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    )
    op.create_index("ix_sources_name", "sources", ["name", "position"])
    op.create_index("ix_sources_next_poll_at", "sources", ["next_poll_at", "name"])
    op.create_index("ix_sources_polled", "sources", ["last_polled_at", "position"])
    op.create_index("ix_sources_position", "sources", ["position"])
    if op.get_bind().dialect.name == "sqlite":
        # Not on PostgreSQL, whose B-tree entry holds at most 2,704 bytes: a long URL is
        # in it twice (in full, and in the search text).
        op.create_index(
            "ix_sources_search", "sources", ["search", "title", "url", "position", "name"]
        )
    op.create_index("ix_sources_state", "sources", ["status", "enabled", "position"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_DEPARTURES_FUNCTION)
        op.execute(POSTGRESQL_DEPARTURES_TRIGGER)
    else:
        op.execute(SQLITE_DEPARTURES_TRIGGER)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: start a new database")
