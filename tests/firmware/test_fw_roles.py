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


def test_beacon_equipment_and_presence_adverts(micropython: Path, tmp_path: Path) -> None:
    got = upy.results_by_key(upy.run(micropython, "roles.py", str(tmp_path)))

    def beacon(step: int) -> str:
        payload = encode_beacon_payload(
            key_id=1, beacon_id=0x5B7, step=step, tx_power_dbm=-59, company_id=COMPANY, key=KEY16
        )
        return build_advertisement(COMPANY, payload).hex()

    step = START_S // 10
    assert got["beacon"]["adverts"] == [beacon(step), beacon(step), beacon(step + 1)]
    assert got["beacon"]["radio"] == beacon(step + 1)

    def equipment(counter: int, flags: int) -> str:
        payload = encode_equipment_payload(
            key_id=1,
            tag_id=0xE001,
            battery_pct=15,
            flags=flags,
            counter=counter,
            company_id=COMPANY,
            key=KEY16,
        )
        return build_advertisement(COMPANY, payload).hex()

    # flags: on charger (bit 0) and low battery (bit 2); moving (bit 1) once it moved
    assert got["equipment"]["adverts"] == [
        equipment(1, 0x05),
        equipment(1, 0x05),
        equipment(2, 0x07),
    ]
    assert got["equipment"]["counter"] == 2
    assert got["equipment_reboot"]["counter"] == 1 + 256 + 1  # above the reserved block

    presence = encode_presence_payload(
        key_id=2,
        device_id=0x0000A001,
        step=START_S // 10,
        battery_pct=80,
        company_id=COMPANY,
        key=KEY16,
    )
    assert got["presence"]["advert"] == build_advertisement(COMPANY, presence).hex()
