"""Many rows into one table with one DBAPI ``executemany``, inside the session's transaction.

Ingest writes hundreds of rows per batch into ``events`` and ``chain_entries``.
Through SQLAlchemy's Core ``execute(insert, rows)`` each row's parameters are
coerced and processed by generic machinery that cost more than the insert itself;
here the statement text is built once per table and dialect, and each value goes
through exactly the bind processor SQLAlchemy itself would apply to its column
(:meth:`TypeEngine._cached_bind_processor`), except for the two that dominate an
events row on SQLite, replaced by equivalents a few times cheaper: UTC datetimes
as SQLAlchemy's naive text, JSON as ``json.dumps``. tests/cloud/test_ingest_bulk.py
holds the stored values to what the ORM stores.

PostgreSQL: psycopg's ``executemany`` (pipelined, server-side prepared after a few
executions); JSON parameters are sent as text with an explicit ``::json`` cast.
SQLite: ``sqlite3``'s ``executemany``.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import JSON, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from cloud_api.models import UtcDateTime


@dataclass(frozen=True, slots=True)
class _Plan:
    """The statement text and per-column value conversion for one table and dialect."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


class JsonText(str):
    """A value already serialised as ``json.dumps`` would: bound as it is to a JSON column."""

    __slots__ = ()


def _json_text(value: Any) -> str | None:
    """What SQLAlchemy's JSON type binds (``json.dumps``), with the empty list spelled out."""
    if value is None:
        return None
    if type(value) is JsonText:
        return value
    if isinstance(value, list) and not value:
        return "[]"
    return json.dumps(value)


class _SqliteUtcText:
    """:class:`~cloud_api.models.UtcDateTime` on SQLite: naive UTC text in SQLAlchemy's own
    layout (``YYYY-MM-DD HH:MM:SS.ffffff``), a few times cheaper than its processor chain.
    The last value is remembered: every row of a batch has the same ``ingested_at``."""

    __slots__ = ("_last_in", "_last_out")

    def __init__(self) -> None:
        self._last_in: datetime | None = None
        self._last_out: str | None = None

    def __call__(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value is self._last_in:
            return self._last_out
        if value.tzinfo is None:
            raise ValueError("naive datetime; store timezone-aware UTC")
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
        self._last_in, self._last_out = value, text
        return text


@functools.cache
def _plan(table: Table, dialect: Dialect, columns: tuple[str, ...], returning: str) -> _Plan:
    processors: list[Callable[[Any], Any] | None] = []
    markers: list[str] = []
    for name in columns:
        column = table.c[name]
        if dialect.name == "postgresql":
            if isinstance(column.type, JSON):
                processors.append(_json_text)
                markers.append("%s::json")
            else:
                processors.append(None)  # psycopg adapts int, bytes, str, aware datetime
                markers.append("%s")
        else:
            if isinstance(column.type, UtcDateTime):
                processors.append(_SqliteUtcText())
            elif isinstance(column.type, JSON):
                processors.append(_json_text)
            else:
                processors.append(column.type._cached_bind_processor(dialect))
            markers.append("?")
    # Only our own schema's table and column names are interpolated.
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(markers)})"
    )
    if returning:
        sql += f" {returning}"
    return _Plan(sql, columns, tuple(processors))


def _parameters(plan: _Plan, rows: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
    """Each row as positional values, processed where the column has a processor."""
    if len(plan.columns) == 1:
        (name,), (proc,) = plan.columns, plan.processors
        return [(row[name] if proc is None else proc(row[name]),) for row in rows]
    getter = operator.itemgetter(*plan.columns)
    processed = [(i, proc) for i, proc in enumerate(plan.processors) if proc is not None]
    if not processed:
        return [getter(row) for row in rows]
    out: list[Sequence[Any]] = []
    for row in rows:
        values = list(getter(row))
        for i, proc in processed:
            values[i] = proc(values[i])
        out.append(values)
    return out


def insert_many(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    suffix: str = "",
) -> Any:
    """``INSERT INTO table (columns) VALUES (...) <suffix>`` for every row; the DBAPI cursor.

    ``columns`` defaults to the keys of the first row. ``suffix`` (our own SQL text,
    such as ``ON CONFLICT DO NOTHING RETURNING id``) follows the VALUES list; on
    PostgreSQL the returned cursor then holds one result set per row
    (``cursor.nextset()``). The caller closes the cursor.
    """
    if not rows:
        raise ValueError("insert_many needs at least one row")
    connection = session.connection()
    names = tuple(columns if columns is not None else rows[0].keys())
    plan = _plan(table, connection.dialect, names, suffix)
    params = _parameters(plan, rows)
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    if isinstance(driver, psycopg.Connection):
        cursor.executemany(plan.sql, params, returning=bool(suffix))
    else:
        cursor.executemany(plan.sql, params)
    return cursor
