"""Jobs: one-at-a-time work (a rebuild, a prune) asked for from any process (issue 14).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

A web replica's "Rebuild" writes a row; a process with pollers runs it under the jobs
lock (``store/jobs.py``). Types spelled out, as in the baseline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIME = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's INTEGER: the rowid


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", INT64, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("requested_at", TIME, nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("runner", sa.String(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_kind", "jobs", ["kind", "id"])
    op.create_index(
        "ix_jobs_one_pending",
        "jobs",
        ["kind"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_one_pending", table_name="jobs")
    op.drop_index("ix_jobs_kind", table_name="jobs")
    op.drop_table("jobs")
