"""Entry keys over 1,000 bytes become their digest, as ``convert.bounded_key`` now makes them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

An entry's key (its guid, else its link) was kept whole, and PostgreSQL's B-tree entries
hold at most 2,704 bytes: a long key that does not compress could not be stored, and its
source's polls failed. Keys over the bound are now ``sha256:`` and the hex digest of the
key. This rewrites the long keys stored before, wherever a table holds one (``entries``:
``key`` and ``alt_key``; ``pages``: ``key``), so that the next poll finds those entries
under the keys it computes, rather than storing them again as new ones. Their ids
(``uid``, made of the old key, and in their files and feeds) are left as they are.

The schema does not change. The rule is spelled out here, never imported: what an old
revision does never changes.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MAX_KEY_BYTES = 1000  # convert.MAX_KEY_BYTES, when this was written
# A key over MAX_KEY_BYTES bytes of UTF-8 has over this many characters (four bytes at
# most each): what the database's length() can select by, on either dialect.
MIN_LONG_CHARS = MAX_KEY_BYTES // 4
ALT_SUFFIX = 13  # an alt key is its entry's key, "#" and 12 hex digits (convert.alt_key)

entries = sa.table(
    "entries",
    sa.column("id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("key", sa.String),
    sa.column("alt_key", sa.String),
)
pages = sa.table("pages", sa.column("source", sa.String), sa.column("key", sa.String))


def bounded(key: str) -> str:
    """The key, or its digest when it is over the bound (``convert.bounded_key``)."""
    raw = key.encode("utf-8")
    if len(raw) <= MAX_KEY_BYTES:
        return key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def rewritten(key: str, alt: str) -> tuple[str, str]:
    """An entry row's (key, alt key) as this version makes them.

    The alt key is the plain key and a suffix: the plain key is bounded, the suffix kept.
    The row's key is either its plain key or, for one of several items a feed gave one
    key to, its alt key.
    """
    if len(alt) > ALT_SUFFIX and alt[-ALT_SUFFIX] == "#":
        new_alt = bounded(alt[:-ALT_SUFFIX]) + alt[-ALT_SUFFIX:]
    else:  # not one convert.alt_key made: taken as a plain key
        new_alt = bounded(alt)
    return (new_alt if key == alt else bounded(key)), new_alt


def upgrade() -> None:
    conn = op.get_bind()
    length = sa.func.length
    rows = conn.execute(
        sa.select(entries.c.id, entries.c.source, entries.c.key, entries.c.alt_key).where(
            sa.or_(
                length(entries.c.key) > MIN_LONG_CHARS,
                length(entries.c.alt_key) > MIN_LONG_CHARS + ALT_SUFFIX,
            )
        )
    ).all()
    renamed: dict[tuple[str, str], str] = {}  # (source, old key) → new key
    changes = []
    for row_id, source, key, alt in rows:
        new_key, new_alt = rewritten(key, alt)
        if (new_key, new_alt) != (key, alt):
            changes.append({"row": row_id, "new_key": new_key, "new_alt": new_alt})
            renamed[source, key] = new_key
    if changes:
        conn.execute(
            sa.update(entries)
            .where(entries.c.id == sa.bindparam("row"))
            .values(key=sa.bindparam("new_key"), alt_key=sa.bindparam("new_alt")),
            changes,
        )
    # A page is stored under its entry's key; one whose entry is gone, under the key
    # taken as a plain one.
    page_keys = conn.execute(
        sa.select(pages.c.source, pages.c.key).where(length(pages.c.key) > MIN_LONG_CHARS)
    ).all()
    moves = [
        {"of": source, "old": key, "new": renamed.get((source, key), bounded(key))}
        for source, key in page_keys
    ]
    moves = [m for m in moves if m["new"] != m["old"]]
    if moves:
        conn.execute(
            sa.update(pages)
            .where(pages.c.source == sa.bindparam("of"), pages.c.key == sa.bindparam("old"))
            .values(key=sa.bindparam("new")),
            moves,
        )


def downgrade() -> None:
    """Nothing to undo in the schema; the digests stay (a long key is not made back from
    its digest): an earlier version stores those entries again, once, as new ones."""
