"""Beacon, equipment tag and wearable presence adverts, checked with patrol_protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from patrol_protocol.adverts import (
    build_advertisement,
    encode_beacon_payload,
    encode_equipment_payload,
    encode_presence_payload,
)

from . import upy

pytestmark = pytest.mark.micropython
KEY16 = bytes(range(16))
COMPANY = 0xFFFF
START_S = 1_795_579_200


def _beacon(step: int, battery_pct: int = 80) -> str:
    payload = encode_beacon_payload(
        key_id=1,
        beacon_id=0x5B7,
        step=step,
        tx_power_dbm=-59,
        battery_pct=battery_pct,
        company_id=COMPANY,
        key=KEY16,
    )
    return build_advertisement(COMPANY, payload).hex()


def _equipment(counter: int, battery_pct: int, battery_mv: int, flags: int) -> str:
    payload = encode_equipment_payload(
        key_id=1,
        tag_id=0xE001,
        battery_pct=battery_pct,
        battery_mv=battery_mv,
        flags=flags,
        counter=counter,
        company_id=COMPANY,
        key=KEY16,
    )
    return build_advertisement(COMPANY, payload).hex()


def test_beacon_equipment_and_presence_adverts(micropython: Path, tmp_path: Path) -> None:
    got = upy.results_by_key(upy.run(micropython, "roles.py", str(tmp_path)))

    step = START_S // 10
    beacon = got["beacon"]
    assert beacon["adverts"] == [_beacon(step, 64), _beacon(step, 64), _beacon(step + 1, 64)]
    assert beacon["radio"] == _beacon(step + 1, 64)
    # a new advert only when the step moves, at the configured interval and radio power
    assert beacon["log"] == [[_beacon(step, 64), 500], [_beacon(step + 1, 64), 500]]
    assert beacon["tx_power_dbm"] == 3
    assert len(bytes.fromhex(_beacon(step))) == 28  # fits the 31-byte legacy advert

    # equipment flags: bit0 on charger, bit1 moving, bit2 low battery, bit3 button, bit4 tamper
    assert got["equipment"]["adverts"] == [
        _equipment(1, 15, 3500, 0x05),
        _equipment(1, 15, 3500, 0x05),
        _equipment(2, 15, 3500, 0x0F),
        _equipment(3, 80, 3950, 0x10),
        _equipment(4, 80, 3950, 0x00),
    ]
    assert (got["equipment"]["counter"], got["equipment"]["interval_ms"]) == (4, 1000)
    assert got["equipment_reboot"]["counter"] == 1 + 256 + 1  # above the reserved block
    assert len(bytes.fromhex(_equipment(1, 15, 3500, 0x1F))) == 30

    presence = encode_presence_payload(
        key_id=2,
        device_id=0x0000A001,
        step=START_S // 10,
        battery_pct=80,
        company_id=COMPANY,
        key=KEY16,
    )
    assert got["presence"]["advert"] == build_advertisement(COMPANY, presence).hex()


@pytest.mark.parametrize("mode", ["light", "deep"])
def test_battery_beacon_sleeps_between_adverts(
    micropython: Path, tmp_path: Path, mode: str
) -> None:
    got = upy.results_by_key(upy.run(micropython, "roles.py", str(tmp_path)))[f"sleep_{mode}"]
    step = START_S // 10
    # each cycle: a 30 ms burst at the 100 ms floor interval, radio off, sleep the rest of 5 s
    assert got["adverts"] == [_beacon(step), _beacon(step), _beacon(step + 1)]
    assert got["log"] == [
        [_beacon(step), 100],
        [None, None],
        [_beacon(step), 100],
        [None, None],
        [_beacon(step + 1), 100],
        [None, None],
    ]
    assert got["sleeps"] == [[mode, 4970]] * 3
    assert got["ticks_ms"] == 3 * 5000
