"""The cloud service's one typed settings object (environment prefix ``PATROL_CLOUD_``).

Required secrets have no default: the service refuses to start without a server
key rather than invent one. Tests build a :class:`Settings` directly and hand it
to :func:`cloud_api.app.create_app`; everything else reads :func:`get_settings`.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

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
