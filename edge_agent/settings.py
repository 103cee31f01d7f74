"""Typed settings of the edge agent: ``PATROL_EDGE_*`` environment variables and a TOML file.

One settings object per component (STYLE habit 8): values the agent cannot guess
(cloud URL, gateway id, API key, queue file) are required; every other value has
a default with its unit in the name. Tests build ``EdgeSettings(...)`` directly
and pass it in; the CLI reads it once through the cached :func:`get_settings`.

Sources, strongest first: keyword arguments, then the environment
(``PATROL_EDGE_<FIELD>``), then the TOML file (flat keys named like the fields,
e.g. ``mqtt_host = "127.0.0.1"``) given by ``--config`` or ``PATROL_EDGE_CONFIG``
(default ``/etc/patrol-edge/edge.toml`` when it exists), then the defaults. So a
technician can override one value for one run without editing the file.
:func:`load_settings` turns every failure into a :class:`ConfigError` that names
the file or the environment variable and the key.
"""

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge_agent.queue import SqliteSynchronous
from patrol_protocol.limits import MAX_BATCH_BYTES, MAX_BATCH_ITEMS

ENV_PREFIX: Final = "PATROL_EDGE_"
CONFIG_ENV: Final = "PATROL_EDGE_CONFIG"
"""Environment variable naming the TOML file (the CLI's ``--config`` wins over it)."""
DEFAULT_CONFIG_FILE: Final = Path("/etc/patrol-edge/edge.toml")
"""Read when it exists and neither ``--config`` nor PATROL_EDGE_CONFIG names a file."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file or variable and key."""


class EdgeSettings(BaseSettings):
    """Everything the edge agent needs to run one site gateway."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file (if the class has one)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    # --- site broker -------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=0, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_client_id: str = Field(
        default="patrol-edge",
        min_length=1,
        max_length=23,
        description="Fixed client id: the broker keeps the persistent session under it.",
    )
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_reconnect_min_delay_s: int = Field(default=1, ge=1)
    mqtt_reconnect_max_delay_s: int = Field(default=30, ge=1)
    embedded_broker: bool = Field(
        default=False,
        description="Start an in-process amqtt broker on mqtt_host:mqtt_port (demo only).",
    )

    # --- cloud -------------------------------------------------------------------
    cloud_url: str = Field(description="Base URL of the cloud API, e.g. https://cloud.example")
    gateway_id: str = Field(min_length=1, max_length=64)
    gateway_api_key: SecretStr

    # --- durable queue -----------------------------------------------------------
    queue_path: Path
    sqlite_synchronous: SqliteSynchronous = Field(
        default="FULL",
        description=(
            "FULL: a commit is on disk before the MQTT PUBACK and the wearable ack are sent, "
            "even across a power cut (WAL + NORMAL may lose the last commits on power loss)."
        ),
    )

    queue_budget_bytes: int | None = Field(
        default=2 * 1024**3,
        ge=64 * 1024,
        description=(
            "Disk budget of the queued items (edge_agent.queue: heartbeats and adverts are "
            "evicted first, scans last, SOS never). 2 GiB holds about 14 million heartbeats "
            "(147 B each), weeks of a site's outage, on a 16 GB SD card. None: unbounded."
        ),
    )

    # --- group commit (MQTT ingest) ----------------------------------------------
    commit_max_messages: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description=(
            "Most messages per transaction. The broker sends at most its max_inflight_messages "
            "unacknowledged messages, so size that window to at least this (mosquitto_conf does)."
        ),
    )
    commit_max_wait_ms: int = Field(
        default=20,
        ge=0,
        le=60_000,
        description=(
            "How long a group waits for more messages before it commits; 0 commits whatever is "
            "buffered at once. Bounds the added latency (an SOS waits at most this long)."
        ),
    )
    ingest_buffer_messages: int = Field(
        default=20_000,
        ge=1,
        description="Bounded hand-off between the MQTT callback and the committer.",
    )

    # --- forwarder ---------------------------------------------------------------
    forward_batch_items: int = Field(default=200, ge=1, le=MAX_BATCH_ITEMS)
    forward_batch_bytes: int = Field(default=MAX_BATCH_BYTES // 2, ge=1024, le=MAX_BATCH_BYTES)
    forward_interval_ms: int = Field(default=500, ge=1)
    forward_timeout_ms: int = Field(default=10_000, ge=100)
    forward_backoff_min_ms: int = Field(default=500, ge=1)
    forward_backoff_max_ms: int = Field(default=60_000, ge=1)
    forward_gzip: bool = Field(
        default=True,
        description="Send batches with Content-Encoding: gzip (JSON of base64 shrinks ~3x).",
    )
    cloud_ca_file: Path | None = Field(
        default=None,
        description=(
            "PEM bundle of the CA(s) that signed the cloud's certificate (private deployments); "
            "None: the system's trust store. Certificates are always verified."
        ),
    )

    # --- BLE ingest (edge_agent.ble) ---------------------------------------------
    ble_enabled: bool = Field(default=False, description="Scan for BLE adverts with bleak.")
    ble_adapter: str | None = Field(default=None, description="e.g. hci0; None: BlueZ's default")
    ble_scanning_mode: Literal["passive", "active"] = Field(
        default="passive",
        description="passive needs BlueZ >= 5.56 with --experimental; falls back to active.",
    )
    ble_company_id: int = Field(
        default=0xFFFF, ge=0, le=0xFFFF, description="Company id of the project's signed adverts."
    )
    ble_heartbeat_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="At most one record per tag per interval."
    )
    ble_away_after_s: float = Field(
        default=60.0, gt=0, le=86_400, description="A tag not heard this long is 'away'."
    )
    ble_rssi_alpha: float = Field(
        default=0.25, gt=0, le=1, description="EWMA weight of the newest RSSI sample."
    )
    ble_buffer_adverts: int = Field(
        default=10_000, ge=1, description="Bounded hand-off: bleak's callback -> worker."
    )
    ble_tick_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the worker checks for away tags."
    )
    ble_retry_min_s: float = Field(default=1.0, gt=0, description="First adapter retry delay.")
    ble_retry_max_s: float = Field(default=60.0, gt=0, description="Longest adapter retry delay.")
    ble_health_check_s: float = Field(
        default=10.0, gt=0, description="How often a scanning adapter is checked with BlueZ."
    )
    ble_restart_if_silent_s: float = Field(
        default=300.0,
        ge=0,
        description="Restart a scanner that heard nothing this long (a BlueZ restart); 0: never.",
    )

    # --- health, metrics, systemd ------------------------------------------------
    health_interval_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="How often a gateway_health observation is queued for the cloud.",
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve /healthz and /metrics on metrics_host:metrics_port."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Loopback by default: the endpoints carry no secrets but need no audience.",
    )
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="0: any free port.")
    thermal_path: Path = Field(
        default=Path("/sys/class/thermal"),
        description="Where the CPU temperature is read (thermal_zone*/temp, millidegrees C).",
    )
    healthz_stale_forward_s: float = Field(
        default=900.0,
        gt=0,
        description=(
            "/healthz reports 'degraded' (still 200) when the oldest unsent item is older: "
            "the queue keeps it, but a technician should look at the uplink."
        ),
    )

    @field_validator("cloud_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("cloud_url must start with http:// or https://")
        return value.rstrip("/")


def config_file_from(explicit: Path | None) -> Path | None:
    """The TOML file to read: ``explicit``, else PATROL_EDGE_CONFIG, else the default if present."""
    if explicit is not None:
        return explicit
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _where(key: str, path: Path | None, file_keys: dict[str, Any]) -> str:
    env_name = ENV_PREFIX + key.upper()
    if any(name.upper() == env_name for name in os.environ):
        return f"environment variable {env_name}"
    if path is not None and key in file_keys:
        return f"{path}: key {key!r}"
    if path is not None:
        return f"key {key!r} (set it in {path} or as {env_name})"
    return f"key {key!r} (set {env_name} or give a config file)"


def load_settings(config_file: Path | None = None) -> EdgeSettings:
    """Read the settings from the environment and the TOML file; :class:`ConfigError` on any
    failure, naming the file or variable and key (never the value: it may be a secret)."""
    path = config_file_from(config_file)
    file_keys: dict[str, Any] = {}
    settings_cls: type[EdgeSettings] = EdgeSettings
    if path is not None:
        file_keys = _read_toml(path)
        nested = sorted(k for k, v in file_keys.items() if isinstance(v, dict))
        if nested:
            raise ConfigError(
                f"config file {path}: keys are flat (mqtt_host = ...), no tables: {nested}"
            )

        class _FromFile(EdgeSettings):
            model_config = SettingsConfigDict(toml_file=path)

        settings_cls = _FromFile
    try:
        return settings_cls()  # type: ignore[call-arg]  # required values come from the sources
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            if error["type"] == "extra_forbidden":
                where = f"{path}: key {key!r}" if path is not None else f"key {key!r}"
                problems.append(f"{where}: unknown setting")
            elif error["type"] == "missing":
                problems.append(f"{_where(key, path, file_keys)}: required, not set")
            else:
                problems.append(f"{_where(key, path, file_keys)}: {error['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings(config_file: Path | None = None) -> EdgeSettings:
    """Read the settings once (tests construct EdgeSettings instead)."""
    return load_settings(config_file)
