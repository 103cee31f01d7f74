"""Two write paths behind one interface: InfluxDB 1.x ``/write`` and 2.x/3.x ``/api/v2/write``.

A writer takes ready line protocol (bytes, newline-separated, nanosecond
timestamps) and either returns (the server stored it) or raises
:class:`SinkWriteError`, whose ``retryable`` says whether the same bytes may
succeed later (outage, timeout, 5xx, 429) or never will (400: bad data).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, cast

import httpx
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from cloud_api.settings import Settings

MAX_ERROR_TEXT_CHARS = 500
"""The server's error body is kept for people up to this size (stored with the row)."""

_BAD_DATA_STATUS = frozenset({400, 422})
"""Only these mean "this data will never be accepted"; anything else (401/403/404 of a
misconfigured sink, 429, 5xx) is retried, since burying good points for a typo'd
database name would lose them."""


class SinkWriteError(Exception):
    """A write failed; ``retryable`` False means InfluxDB refused the data itself."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def _status_error(status: int, text: str) -> SinkWriteError:
    retryable = status not in _BAD_DATA_STATUS
    return SinkWriteError(
        f"InfluxDB answered HTTP {status}: {text[:MAX_ERROR_TEXT_CHARS]}",
        retryable=retryable,
        status=status,
    )


class LineWriter(Protocol):
    """Writes line protocol with nanosecond precision."""

    def write(self, body: bytes) -> None:
        """Store ``body`` or raise :class:`SinkWriteError`."""

    def close(self) -> None:
        """Release connections."""


class V1Writer:
    """InfluxDB 1.x and v1-compatible endpoints: ``POST /write?db=&rp=&precision=ns``."""

    def __init__(
        self,
        url: str,
        *,
        database: str,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        auth = (username, password or "") if username else None
        self._client = httpx.Client(
            base_url=url.rstrip("/"), params=params, auth=auth, timeout=timeout_s
        )

    def write(self, body: bytes) -> None:
        try:
            response = self._client.post("/write", content=body)
        except httpx.HTTPError as exc:
            raise SinkWriteError(f"InfluxDB unreachable: {exc!r}", retryable=True) from exc
        if response.status_code != 204 and not response.is_success:
            raise _status_error(response.status_code, response.text)

    def close(self) -> None:
        self._client.close()


class V2Writer:
    """InfluxDB 2.x, 3.x and Cloud through ``influxdb-client``'s synchronous write API.

    The client is handed ready line protocol (its ``Point`` class is far too slow
    for the sink's rate); it does no retries of its own: the outbox retries.
    """

    def __init__(
        self, url: str, *, org: str, bucket: str, token: str, timeout_s: float = 10.0
    ) -> None:
        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                # The library types its own constants as str.
                write_precision=cast(WritePrecision, WritePrecision.NS),
            )
        except ApiException as exc:
            raise _status_error(int(exc.status or 0), str(exc.body or exc.reason)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkWriteError(f"InfluxDB unreachable: {exc!r}", retryable=True) from exc

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]  # untyped library method
        self._client.close()  # type: ignore[no-untyped-call]


def make_writer(settings: Settings) -> LineWriter:
    """The writer ``settings`` ask for (``influx_url`` must be set)."""
    if settings.influx_url is None:
        raise ValueError("influx_url is not set: the sink is off")
    if settings.influx_api == "v2":
        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        return V2Writer(
            settings.influx_url,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            token=token,
            timeout_s=settings.sink_write_timeout_s,
        )
    password = settings.influx_password.get_secret_value() if settings.influx_password else None
    return V1Writer(
        settings.influx_url,
        database=settings.influx_db,
        retention_policy=settings.influx_rp,
        username=settings.influx_username,
        password=password,
        timeout_s=settings.sink_write_timeout_s,
    )


def write_pipelined(writer: LineWriter, bodies: Iterable[bytes], *, in_flight: int = 1) -> int:
    """Write ``bodies``, producing the next while up to ``in_flight`` writes are on the wire.

    The producer (serialisation, reading rows) runs in the caller's thread;
    ``in_flight`` writer threads wait on the server (InfluxDB handles concurrent
    writes in parallel; order between them does not matter, every point carries
    its own time). Returns the bytes written; the first failure is raised once
    the writes in flight finished.
    """
    written = 0
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="influx-write") as pool:
        pending: deque[Future[None]] = deque()
        for body in bodies:
            if len(pending) >= in_flight:
                pending.popleft().result()
            pending.append(pool.submit(writer.write, body))
            written += len(body)
        while pending:
            pending.popleft().result()
    return written
