"""Helpers for the InfluxDB sink tests: a private database per test, InfluxQL read-back."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

QUERY_TIMEOUT_S = 10.0


def influxql(url: str, q: str, *, db: str | None = None) -> list[dict[str, Any]]:
    """Run InfluxQL; the ``series`` of the first result (empty list when none)."""
    params = {"q": q, "epoch": "ns"}
    if db is not None:
        params["db"] = db
    response = httpx.post(f"{url}/query", data=params, timeout=QUERY_TIMEOUT_S)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Every row of every series as a dict (tags of GROUP BY merged in)."""
    out: list[dict[str, Any]] = []
    for series in influxql(url, q, db=db):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags") or {})
            out.append(row)
    return out


@contextmanager
def private_database(url: str) -> Iterator[str]:
    """A fresh InfluxDB database for one test, dropped afterwards."""
    name = f"sink_{uuid.uuid4().hex[:12]}"
    influxql(url, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        influxql(url, f'DROP DATABASE "{name}"')


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
