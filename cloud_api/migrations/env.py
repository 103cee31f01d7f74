"""Alembic environment: runs revisions against ``Base.metadata`` of :mod:`cloud_api.models`.

- SQLite: ``render_as_batch`` so ALTERs that SQLite lacks become table copies.
- PostgreSQL (psycopg 3): a transaction-scoped advisory lock first, so several
  service processes starting at once upgrade the schema exactly once.
- A connection handed in through ``config.attributes["connection"]`` is used as
  is (inside its caller's transaction); otherwise an engine is built from
  ``sqlalchemy.url`` with :func:`cloud_api.db.make_engine`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

import cloud_api.models
from cloud_api.migrations import render_item
from cloud_api.models import Base

SCHEMA_LOCK_ID = 0x70617472
"""PostgreSQL advisory lock id ("patr"), the same as cloud_api.db uses."""

target_metadata = Base.metadata
assert cloud_api.models.Base is Base  # every table registers on import of cloud_api.models


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        context.run_migrations()


def run_migrations_offline() -> None:
    """``--sql`` mode: print the DDL instead of running it."""
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=bool(url and url.startswith("sqlite")),
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection, or on a fresh engine for the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    from cloud_api.db import make_engine

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
