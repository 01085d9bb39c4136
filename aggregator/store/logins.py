"""The admin's side of the index: the session signing key and the logged-in sessions.

A Store mixin (like ``queries``): the web app signs its cookies with a random key made
once per database, never with anything derived from the admin secret, so a cookie is no
oracle for guessing the secret offline; and a session is an admin session only while its
row is here, so logging out ends it on the server, for every copy of the cookie. Both
live in the database, so they survive restarts and every web process on it shares them.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aggregator.store.dialects import insert_ignore
from aggregator.store.schema import admin_sessions_table, secrets_table

SESSION_KEY = "session_key"


class Logins:
    """Session key and admin sessions (a mixin: the Store provides the connections)."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[Connection]: ...

        def reading(self) -> AbstractContextManager[Connection]: ...

    def session_key(self) -> str:
        """The key that signs session cookies, made on first use.

        Inserted unless present (``INSERT OR IGNORE``, ``ON CONFLICT DO NOTHING``), then
        read: two processes starting at once agree on one key.
        """
        t = secrets_table
        with self.transaction() as conn:
            conn.execute(
                insert_ignore(conn, t).values(key=SESSION_KEY, value=secrets.token_hex(32))
            )
            key: str = conn.execute(sa.select(t.c.value).where(t.c.key == SESSION_KEY)).scalar_one()
        return key

    def start_admin_session(self, secret_mark: str, now: datetime, lifetime: timedelta) -> str:
        """Record a new admin session, forgetting those older than ``lifetime``; its id.

        Args:
            secret_mark: identifies the admin secret that logged in (a session ends when
                the secret changes).
        """
        t = admin_sessions_table
        session_id = secrets.token_urlsafe(32)
        with self.transaction() as conn:
            conn.execute(sa.delete(t).where(t.c.created_at < now - lifetime))
            conn.execute(
                sa.insert(t).values(id=session_id, secret_mark=secret_mark, created_at=now)
            )
        return session_id

    def is_admin_session(
        self, session_id: str, secret_mark: str, now: datetime, lifetime: timedelta
    ) -> bool:
        """True while the session is recorded, younger than ``lifetime``, for this secret."""
        t = admin_sessions_table
        query = sa.select(t.c.id).where(
            t.c.id == session_id,
            t.c.secret_mark == secret_mark,
            t.c.created_at >= now - lifetime,
        )
        with self.reading() as conn:
            return conn.execute(query).first() is not None

    def end_admin_session(self, session_id: str) -> None:
        """Forget the session: its cookie, wherever copied, is no longer an admin's."""
        t = admin_sessions_table
        with self.transaction() as conn:
            conn.execute(sa.delete(t).where(t.c.id == session_id))
