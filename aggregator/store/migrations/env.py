"""Alembic's environment: run the revisions on the store's connection, or on ``-x url=``.

The store hands in its connection, already in the transaction that holds the migration
lock (``store/migrate.py``): the revisions run inside it and the caller commits. The
``alembic`` command line (developers: ``alembic -x url=sqlite:///dev.sqlite upgrade head``,
then ``revision --autogenerate``) names a database by URL instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from aggregator.store.migrate import made_on
from aggregator.store.schema import metadata


def run(connection: Connection) -> None:
    """The pending revisions on ``connection``, in its transaction (begun if none is)."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters most of a table only by copying it: Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=made_on(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        run(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("name the database: alembic -x url=sqlite:///dev.sqlite ...")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            run(connection)
            connection.commit()
    finally:
        engine.dispose()


main()
