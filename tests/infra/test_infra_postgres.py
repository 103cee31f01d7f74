"""The private PostgreSQL database is real, private, and usable as the product uses it."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy

pytestmark = pytest.mark.postgres


def libpq_url(pg_url: str) -> str:
    """psycopg's own URL form of the fixture's SQLAlchemy URL."""
    assert pg_url.startswith("postgresql+psycopg://")
    return pg_url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_create_insert_select(pg_url: str) -> None:
    with psycopg.connect(libpq_url(pg_url)) as connection:
        connection.execute(
            "CREATE TABLE infra_scan (device_id bigint, seq bigint, uid bytea, "
            "PRIMARY KEY (device_id, seq))"
        )
        try:
            connection.execute(
                "INSERT INTO infra_scan VALUES (%s, %s, %s), (%s, %s, %s)",
                (0x0000A001, 1, b"\x04\xa1", 0x0000A001, 2, b"\x04\xa2"),
            )
            rows = connection.execute("SELECT * FROM infra_scan ORDER BY seq").fetchall()
            assert rows == [(0x0000A001, 1, b"\x04\xa1"), (0x0000A001, 2, b"\x04\xa2")]
            # The idempotency key is enforced by the database itself.
            with pytest.raises(psycopg.errors.UniqueViolation):
                connection.execute("INSERT INTO infra_scan VALUES (%s, 2, NULL)", (0x0000A001,))
        finally:
            connection.rollback()


def test_database_is_private_and_unprivileged(pg_url: str) -> None:
    with psycopg.connect(libpq_url(pg_url)) as connection:
        database, user, superuser = connection.execute(
            "SELECT current_database(), current_user, rolsuper FROM pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
    assert database.startswith("patrol_test_")
    assert user.startswith("patrol_test_")
    assert superuser is False


def test_sqlalchemy_url_works(pg_url: str) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 6 * 7")).scalar_one() == 42
    finally:
        engine.dispose()
