from cloud_api.verify import fields_of
from patrol_protocol.frames import EquipmentNear, Heartbeat, NfcScan


def test_heartbeat_items_become_plain_json_fields() -> None:
    body = Heartbeat(
        battery_pct=81,
        battery_mv=3912,
        status=0x02,
        queue_depth=3,
        items=(EquipmentNear(0x00E00001, -50, 87), EquipmentNear(0x00E00002, -61, 64)),
    )
    assert fields_of(body) == {
        "battery_pct": 81,
        "battery_mv": 3912,
        "status": 2,
        "queue_depth": 3,
        "items": [
            {"tag_id": 0x00E00001, "rssi_dbm": -50, "battery_pct": 87},
            {"tag_id": 0x00E00002, "rssi_dbm": -61, "battery_pct": 64},
        ],
    }


def test_bytes_become_lowercase_hex() -> None:
    body = NfcScan(tag_type=2, uid=bytes.fromhex("04C0FFEE123401"), picc_enc=None, sdmmac=None)
    assert fields_of(body)["uid"] == "04c0ffee123401"
