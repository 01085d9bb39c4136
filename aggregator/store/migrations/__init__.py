"""The index's schema changes as Alembic revisions (``versions/``), for SQLite and PostgreSQL.

``env.py`` is Alembic's entry point: the store runs it through ``store/migrate.py`` with
its own connection (``Config.attributes["connection"]``), a developer through the
``alembic`` command line (``[tool.alembic]`` in pyproject.toml, ``-x url=...``).
"""
