"""Engine, session and schema creation for SQLite (default) and PostgreSQL (psycopg 3).

``init_db`` is the single schema seam: it runs Alembic's ``upgrade heads``
(:mod:`cloud_api.migrations`) in one transaction, under a PostgreSQL advisory
lock, so every process may call it at start-up and the schema is built once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.models import Base

SQLITE_BUSY_TIMEOUT_S = 30
"""A second writer waits this long for SQLite's single write lock before failing."""

_SCHEMA_LOCK_ID = 0x70617472
"""PostgreSQL advisory lock id ("patr"): two processes starting at once create tables once."""


def make_engine(database_url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL and a busy timeout."""
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Connection) -> None:
            # Take the write lock up front (waiting up to the busy timeout): a deferred
            # transaction that reads, then writes after another process committed,
            # fails at once with SQLITE_BUSY instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(database_url, pool_pre_ping=True)


def init_db(
    engine: Engine, *, from_scratch: Literal["metadata", "migrations"] = "metadata"
) -> None:
    """Create or upgrade the schema to every Alembic head, in one transaction.

    - A database with an ``alembic_version`` is upgraded: ``upgrade heads``.
    - An empty database is built with Alembic's recipe for a database from scratch
      ("Building an Up to Date Database from Scratch" in its cookbook):
      ``metadata.create_all`` then ``stamp heads``. tests/cloud/test_migrations.py
      proves that ``upgrade heads`` from empty builds exactly this schema; the recipe
      takes a fraction of the time of ~50 ``create_table`` operations, which every
      test fixture pays. ``from_scratch="migrations"`` runs the revisions instead.
    - A database made by the pre-Alembic ``create_all`` (tables, no
      ``alembic_version``) is stamped at ``0001_baseline``, whose tables it has, then
      upgraded.

    Raises :class:`SchemaError` when a model table has no revision that creates it.
    """
    from alembic import command

    from cloud_api.migrations import BASELINE_REVISION, alembic_config, tables_created_by_revisions

    unrevised = sorted(set(Base.metadata.tables) - tables_created_by_revisions())
    if unrevised:
        raise SchemaError(
            f"tables {', '.join(unrevised)} are in cloud_api.models but no Alembic revision "
            "creates them; add one: patrol-cloud db revision --autogenerate -m '...' "
            "--rev-id <area>_<n>_<what> (see cloud_api/migrations/__init__.py)"
        )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        config = alembic_config(engine.url.render_as_string(hide_password=False), connection=conn)
        tables = set(inspect(conn).get_table_names())
        if not tables and from_scratch == "metadata":
            Base.metadata.create_all(conn)
            command.stamp(config, "heads")
            return
        if "alembic_version" not in tables and "sites" in tables:
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, "heads")
        missing = sorted(set(Base.metadata.tables) - set(inspect(conn).get_table_names()))
    if missing:
        raise SchemaError(f"after upgrade heads the database still lacks {', '.join(missing)}")


class SchemaError(RuntimeError):
    """The models and the Alembic revisions disagree (a table without a revision)."""


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (routes return them)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
