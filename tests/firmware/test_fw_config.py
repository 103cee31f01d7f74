"""config.json as `patrol provision` writes it, parsed by the firmware in MicroPython.

Each role gets its settings; a missing or malformed field is refused with a
ValueError naming it (main.py then fails at boot with that reason instead of
running with a wrong key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from . import upy

pytestmark = pytest.mark.micropython

KEY32 = "00" * 32
KEY16 = "11" * 16
WEARABLE = {
    "role": "wearable",
    "device_id": "0000a001",
    "site_id": 3,
    "key_id": 2,
    "key_hex": KEY32,
    "presence_key_hex": KEY16,
    "wifi_ssid": "w",
    "wifi_password": "p",
    "mqtt_host": "192.168.1.10",
    "mqtt_password": "secret",
}


def _cases(
    micropython: Path, tmp_path: Path, cases: list[dict[str, Any]]
) -> list[dict[str, object]]:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    result = upy.run(micropython, "config_cases.py", str(path))
    by_key = upy.results_by_key(result)
    return [by_key[str(i)] for i in range(len(cases))]


def test_each_role_gets_its_settings(micropython: Path, tmp_path: Path) -> None:
    legacy = {k: v for k, v in WEARABLE.items() if k not in ("role", "presence_key_hex")}
    beacon = {"role": "beacon", "device_id": "000b0001", "key_id": 1, "key_hex": KEY16}
    tag = {"role": "equipment_tag", "device_id": "000e0001", "key_id": 1, "key_hex": KEY16}
    got = _cases(micropython, tmp_path, [WEARABLE, legacy, {**beacon, "sleep_mode": "deep"}, tag])
    assert [g["ok"] for g in got] == [
        ["wearable", 0x0000A001, 2, "0000a001", 1883, True],
        ["wearable", 0x0000A001, 2, "0000a001", 1883, False],  # no role: a wearable
        ["beacon", 0x000B0001, 1, 1000, "deep"],
        ["equipment_tag", 0x000E0001, 1, 1000],
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"role": "toaster"}, "unknown role 'toaster'"),
        ({"device_id": "a001"}, "device_id must be 8 hex digits"),
        ({"key_hex": "00" * 16}, "key_hex must be 32 bytes"),
        ({"key_hex": "zz" * 32}, "key_hex is not hex"),
        ({"presence_key_hex": "00" * 32}, "presence_key_hex must be 16 bytes"),
        ({"mqtt_password": None}, "mqtt_password must be non-empty text"),
        ({"mqtt_host": ""}, "mqtt_host must be non-empty text"),
    ],
)
def test_bad_fields_are_refused_with_their_name(
    micropython: Path, tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    (got,) = _cases(micropython, tmp_path, [{**WEARABLE, **change}])
    assert got == {"key": "0", "error": error}


@pytest.mark.parametrize("missing", ["device_id", "key_hex", "mqtt_host", "mqtt_password"])
def test_a_missing_field_is_named(micropython: Path, tmp_path: Path, missing: str) -> None:
    (got,) = _cases(micropython, tmp_path, [{k: v for k, v in WEARABLE.items() if k != missing}])
    assert got == {"key": "0", "error": f"config has no {missing}"}
