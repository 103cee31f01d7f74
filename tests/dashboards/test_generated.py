"""The committed dashboards: current with the generator, parseable by the SDK's models,
unique uids, one data source (the provisioned one), the console's link contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from patrol_dashboards.build import JSON_DIR, rendered, stale, write
from patrol_dashboards.influxql import InfluxQLQuery

REPO = Path(__file__).resolve().parents[2]
DATASOURCE_FILE = REPO / "dashboards/provisioning/datasources/patrol-influxdb.yaml"
UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
"""Grafana: a dashboard uid is at most 40 characters of letters, digits, '-' and '_'."""
CONSOLE_URL = re.compile(
    r"/console/(sites/\$\{__field\.labels\.site\}|posts/\$\{__(field\.labels|data\.fields)\.post\}"
    r"|posts/\$\{post\}|alerts)"
)
"""The console paths promised in docs/dashboards.md, filled from a label, column or variable."""
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline"}


def _files() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(JSON_DIR.glob("*.json"))
    }


def test_committed_json_is_what_the_generator_builds() -> None:
    assert stale() == [], "run: .venv/bin/python dashboards/generate.py"
    assert sorted(_files()) == sorted(rendered()) and len(rendered()) == 5


def test_the_check_catches_an_edit_a_missing_and_a_leftover_file(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale(tmp_path) == []
    edited = tmp_path / "patrol-overview.json"
    edited.write_text(edited.read_text().replace("Compliance score by site", "Score"))
    (tmp_path / "patrol-emergencies.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    assert stale(tmp_path) == ["old.json", "patrol-emergencies.json", "patrol-overview.json"]


def test_generate_script_check_mode() -> None:
    """The command people run: exit 0 when current (the committed tree is current)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "dashboards/generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_uids_unique_and_valid() -> None:
    uids = [d["uid"] for d in _files().values()]
    assert len(set(uids)) == len(uids) == 5
    assert all(UID_PATTERN.fullmatch(uid) for uid in uids)
    for name, d in _files().items():
        assert name == f"{d['uid']}.json"
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), name
        titles = [p["title"] for p in d["panels"]]
        assert len(set(titles)) == len(titles), name


def test_every_panel_target_and_variable_uses_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"][0]
    expected = {"type": provisioned["type"], "uid": provisioned["uid"]}
    assert expected == {"type": "influxdb", "uid": "patrol-influxdb"}
    for name, d in _files().items():
        for panel in d["panels"]:
            assert panel["datasource"] == expected, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == expected, (name, panel["title"])
                assert target["rawQuery"] is True
        for variable in d["templating"]["list"]:
            assert variable["datasource"] == expected, (name, variable["name"])


def test_json_parses_with_the_sdk_models_and_round_trips() -> None:
    for name, data in _files().items():
        model = dm.Dashboard.from_json(data)
        assert model.uid == data["uid"]
        assert model.panels is not None
        for panel in model.panels:
            assert isinstance(panel, dm.Panel), name
            assert panel.type_val in PANEL_TYPES, (name, panel.type_val)
            assert panel.targets and all(isinstance(t, InfluxQLQuery) for t in panel.targets)
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        assert again == data, name


def test_builder_mode_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="not a raw InfluxQL query"):
        InfluxQLQuery.from_json({"refId": "A", "measurement": "scan"})


def test_panels_have_descriptions_units_and_console_links() -> None:
    links: list[str] = []
    for name, d in _files().items():
        links += [link["url"] for link in d.get("links", [])]
        for panel in d["panels"]:
            assert len(panel.get("description", "")) > 20, (name, panel["title"])
            defaults = panel["fieldConfig"]["defaults"]
            links += [link["url"] for link in defaults.get("links", [])]
            if panel["type"] in {"timeseries", "stat", "bargauge"}:
                assert defaults.get("unit"), (name, panel["title"])
            if panel["type"] in {"stat", "bargauge"}:  # coloured by thresholds
                assert defaults["thresholds"]["steps"], (name, panel["title"])
            if panel["type"] == "state-timeline":  # coloured by its value mappings
                assert defaults["mappings"], (name, panel["title"])
            for link in defaults.get("links", []):
                # a link filled from a series label or a table column needs that tag grouped
                for tag in re.findall(r"__(?:field\.labels|data\.fields)\.(\w+)", link["url"]):
                    for target in panel["targets"]:
                        assert re.search(rf'GROUP BY .*"{tag}"', target["query"]), (
                            name,
                            panel["title"],
                            tag,
                        )
    assert links, "no link into the console at all"
    for url in links:
        assert CONSOLE_URL.fullmatch(url), url
    paths = {re.sub(r"\$\{[^}]+\}", "{}", url) for url in links}
    assert paths == {"/console/sites/{}", "/console/posts/{}", "/console/alerts"}
