"""The outbox: article files that pollers decided, for the exporter to write (issue 14).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Rows are appended by a ``Store`` without the posts folder (``aggregator poller``) in the
transaction of the entry rows they belong to, and deleted by ``aggregator export`` once
their files are written (``store/outbox.py``). Types spelled out, as in the baseline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's INTEGER: the rowid


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", INT64, nullable=False),
        sa.Column("op", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("uid", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("change", sa.String(), nullable=True),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("outbox")
