"""The cloud service's one typed settings object (environment prefix ``PATROL_CLOUD_``).

Required secrets have no default: the service refuses to start without a server
key rather than invent one. Tests build a :class:`Settings` directly and hand it
to :func:`cloud_api.app.create_app`; everything else reads :func:`get_settings`.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from patrol_protocol.limits import MAX_BATCH_BYTES

SERVER_KEY_BYTES = 32
"""AES-256-GCM key that encrypts device and tag keys at rest."""


class Settings(BaseSettings):
    """Cloud service configuration; every duration and size carries its unit."""

    model_config = SettingsConfigDict(env_prefix="PATROL_CLOUD_", extra="ignore")

    database_url: str = "sqlite:///./patrol-cloud.db"
    server_key: SecretStr = Field(
        description="base64 of 32 random bytes; encrypts device/tag keys at rest"
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token for read endpoints until people auth arrives (issue 5)",
    )
    access_token_ttl_s: int = Field(
        default=900, ge=60, le=86_400, description="lifetime of a person's access token"
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="failed logins in a row before the account is locked"
    )
    login_lockout_s: int = Field(
        default=900, ge=1, description="how long a locked account refuses logins"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_bytes: int = MAX_BATCH_BYTES
    clock_skew_tolerance_s: int = Field(
        default=300, description="device vs gateway/server time beyond this is flagged"
    )
    max_future_skew_s: int = Field(
        default=3600,
        description="a synced device time this far ahead of the server's is rejected",
    )
    sun_counter_jump_flag: int = Field(
        default=1000,
        description="an NTAG 424 read counter this far past the last one is flagged",
    )
    # InfluxDB sink (cloud_api.sink): off unless influx_url is set.
    influx_url: str | None = Field(
        default=None, description="InfluxDB base URL; unset = no sink, no outbox rows"
    )
    sink_run_worker: bool = Field(
        default=True,
        description="drain the outbox in this process; False: only fill it (others drain)",
    )
    influx_api: Literal["v1", "v2"] = Field(
        default="v1", description="v1: /write (1.x, v1-compatible); v2: /api/v2/write (2.x/3.x)"
    )
    influx_db: str = Field(default="patrol", description="v1 database")
    influx_rp: str | None = Field(default=None, description="v1 retention policy (default: db's)")
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_org: str = Field(default="patrol", description="v2 organisation")
    influx_bucket: str = Field(default="patrol", description="v2 bucket")
    influx_token: SecretStr | None = Field(default=None, description="v2 API token")
    sink_write_timeout_s: float = Field(
        default=10.0, gt=0, description="one write to InfluxDB may take this long"
    )
    sink_poll_interval_s: float = Field(
        default=1.0, gt=0, description="an idle worker looks for new outbox rows this often"
    )
    sink_batch_points: int = Field(
        default=5000, ge=1, le=100_000, description="points per write (InfluxDB: 5,000 is best)"
    )
    sink_retry_initial_s: float = Field(
        default=1.0, gt=0, description="first backoff after a failed write; doubles per attempt"
    )
    sink_retry_max_s: float = Field(default=300.0, gt=0, description="backoff ceiling")
    # Ingest admission per gateway (edge-ops), per process: refused before the body is
    # read with 429 and Retry-After, which the edge forwarder honours (nothing is lost:
    # the batch stays queued at the edge). A database that is down or locked answers 503
    # with Retry-After (cloud_api.api.problems).
    ingest_gateway_batches_per_s: float | None = Field(
        default=None,
        gt=0,
        description="token-bucket rate of batches per gateway; None: no rate limit",
    )
    ingest_gateway_burst: int = Field(
        default=20, ge=1, description="batches a gateway may send back to back before the rate"
    )
    ingest_gateway_max_concurrent: int | None = Field(
        default=None,
        ge=1,
        description="batches of one gateway processed at once (an edge uses 2); None: any",
    )
    ingest_busy_retry_after_s: int = Field(
        default=1, ge=1, le=3600, description="Retry-After of a 429 for the concurrency limit"
    )
    sink_lease_s: float = Field(
        default=60.0, gt=0, description="claimed rows return to the pool if not done by then"
    )

    @property
    def influx_enabled(self) -> bool:
        """Whether accepted evidence goes to the outbox and a worker drains it."""
        return self.influx_url is not None

    @field_validator("server_key")
    @classmethod
    def _server_key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        decode_server_key(value.get_secret_value())
        return value

    def server_key_bytes(self) -> bytes:
        """The decoded 32-byte server key."""
        return decode_server_key(self.server_key.get_secret_value())


def decode_server_key(text: str) -> bytes:
    """Decode base64 (standard or URL-safe) and insist on exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("server_key must be base64") from exc
    if len(raw) != SERVER_KEY_BYTES:
        raise ValueError(f"server_key must decode to {SERVER_KEY_BYTES} bytes, got {len(raw)}")
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once; tests call ``get_settings.cache_clear()``."""
    return Settings()  # type: ignore[call-arg]  # required values come from the environment
