"""The provisioning files follow Grafana's documented format ("Provision Grafana",
grafana.com/docs/grafana/latest/administration/provisioning/): ``apiVersion: 1``, a
``datasources`` list and a ``providers`` list with the documented keys, environment
variables ($NAME or ${NAME}) only in values, never in keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATASOURCES = REPO / "dashboards/provisioning/datasources/patrol-influxdb.yaml"
PROVIDERS = REPO / "dashboards/provisioning/dashboards/patrol.yaml"

DATASOURCE_KEYS = {
    "name",
    "type",
    "access",
    "orgId",
    "uid",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
    "secureJsonData",
    "version",
    "editable",
}
"""The keys of a data source in the documented example config file."""
PROVIDER_KEYS = {
    "name",
    "orgId",
    "folder",
    "folderUid",
    "type",
    "disableDeletion",
    "updateIntervalSeconds",
    "allowUiUpdates",
    "options",
}
PROVIDER_OPTION_KEYS = {"path", "foldersFromFilesStructure"}
ENV_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(value: Any, env: dict[str, str]) -> Any:
    """Grafana's expansion of $NAME / ${NAME} in provisioning values (unset -> "")."""
    if isinstance(value, str):
        return ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)
    if isinstance(value, dict):
        return {k: expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    return value


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_datasource_file_format() -> None:
    document = yaml.safe_load(DATASOURCES.read_text())
    assert document["apiVersion"] == 1
    assert set(document) == {"apiVersion", "datasources"}
    (source,) = document["datasources"]
    assert set(source) <= DATASOURCE_KEYS
    assert {"name", "type", "access", "url", "uid"} <= set(source)
    assert source["type"] == "influxdb" and source["access"] == "proxy"
    assert source["jsonData"]["version"] == "InfluxQL"  # works on InfluxDB 1.x, 2.x, 3.x
    assert set(source["secureJsonData"]) == {"password"}  # encrypted by Grafana, never logged
    assert not any("$" in key for key in _keys(document)), "env vars only in values"


def test_datasource_values_come_from_the_environment() -> None:
    document = yaml.safe_load(DATASOURCES.read_text())
    env = {
        "PATROL_INFLUX_URL": "http://influxdb:8086",
        "PATROL_INFLUX_DB": "patrol",
        "PATROL_INFLUX_USER": "grafana",
        "PATROL_INFLUX_PASSWORD": "x9$Secret",
    }
    (source,) = expand(document, env)["datasources"]
    assert source["url"] == "http://influxdb:8086"
    assert source["user"] == "grafana"
    assert source["jsonData"]["dbName"] == "patrol"
    assert source["secureJsonData"]["password"] == "x9$Secret"  # expanded once, as is
    # The file holds references only, no secret.
    assert document["datasources"][0]["secureJsonData"] == {"password": "$PATROL_INFLUX_PASSWORD"}


def test_dashboard_provider_format_and_path() -> None:
    document = yaml.safe_load(PROVIDERS.read_text())
    assert document["apiVersion"] == 1
    assert set(document) == {"apiVersion", "providers"}
    (provider,) = document["providers"]
    assert set(provider) <= PROVIDER_KEYS
    assert provider["type"] == "file"
    assert set(provider["options"]) <= PROVIDER_OPTION_KEYS
    assert provider["allowUiUpdates"] is False  # the code is the source of truth
    assert not any("$" in key for key in _keys(document))
    expanded = expand(document, {"PATROL_DASHBOARDS_DIR": str(REPO / "dashboards/json")})
    folder = Path(expanded["providers"][0]["options"]["path"])
    assert sorted(p.name for p in folder.glob("*.json")) == [
        "patrol-edge-health.json",
        "patrol-emergencies.json",
        "patrol-equipment.json",
        "patrol-overview.json",
        "patrol-post-timeline.json",
    ]
