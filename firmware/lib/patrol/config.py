"""Device settings from /config.json, as ``patrol provision`` writes it into a bundle.

One file per device; ``role`` picks the device logic (a missing role means a
wearable, the original layout)::

    {"role": "wearable", "device_id": "0000a001", "key_hex": "<64 hex>", "key_id": 1,
     "presence_key_hex": "<32 hex>", "wifi_ssid": "...", "wifi_password": "...",
     "mqtt_host": "192.168.1.10", "mqtt_port": 1883, "mqtt_password": "...", ...}
    {"role": "beacon", "device_id": "000b0001", "key_hex": "<32 hex>", "key_id": 1, ...}
    {"role": "equipment_tag", "device_id": "000e0001", "key_hex": "<32 hex>", "key_id": 1}

Pure parsing (no HAL): the same code runs on the device (main.py) and in the Unix
port, where tests boot a provisioning bundle with the simulated board. A value
that is missing or malformed raises ValueError naming the field.
"""

import json

ROLE_WEARABLE = "wearable"
ROLE_BEACON = "beacon"
ROLE_EQUIPMENT_TAG = "equipment_tag"
ROLES = (ROLE_WEARABLE, ROLE_BEACON, ROLE_EQUIPMENT_TAG)


def read(path):
    """The raw settings dict of ``path``; ValueError if it is not a JSON object."""
    with open(path) as f:
        raw = json.loads(f.read())
    if not isinstance(raw, dict):
        raise ValueError("config must be a JSON object")
    return raw


def role_of(raw):
    """The device role named in ``raw`` (default: wearable)."""
    role = raw.get("role", ROLE_WEARABLE)
    if role not in ROLES:
        raise ValueError("unknown role %r" % (role,))
    return role


def device_id_of(raw):
    """The 32-bit device id from its 8-hex-digit text."""
    text = _field(raw, "device_id")
    if not isinstance(text, str) or len(text) != 8:
        raise ValueError("device_id must be 8 hex digits")
    return int(text, 16)


def _field(raw, name):
    if name not in raw:
        raise ValueError("config has no %s" % name)
    return raw[name]


def _text(raw, name):
    value = _field(raw, name)
    if not isinstance(value, str) or not value:
        raise ValueError("%s must be non-empty text" % name)
    return value


def _key(raw, name, size):
    text = _field(raw, name)
    try:
        key = bytes.fromhex(text)
    except (TypeError, ValueError):
        raise ValueError("%s is not hex" % name)
    if len(key) != size:
        raise ValueError("%s must be %d bytes" % (name, size))
    return key


def wearable_config(raw):
    """WearableConfig from a wearable's settings (the broker user is the device id text)."""
    from patrol.wearable import WearableConfig

    device_id = device_id_of(raw)
    presence_key = _key(raw, "presence_key_hex", 16) if "presence_key_hex" in raw else None
    return WearableConfig(
        device_id=device_id,
        key=_key(raw, "key_hex", 32),
        key_id=raw.get("key_id", 1),
        mqtt_host=_text(raw, "mqtt_host"),
        mqtt_port=raw.get("mqtt_port", 1883),
        mqtt_user=raw["device_id"],
        mqtt_password=_text(raw, "mqtt_password"),  # site brokers refuse anonymous devices
        heartbeat_interval_s=raw.get("heartbeat_interval_s", 60),
        visit_rssi_dbm=raw.get("visit_rssi_dbm", -70),
        visit_dwell_s=raw.get("visit_dwell_s", 10),
        man_down_s=raw.get("man_down_s", 0),
        man_down_cancel_s=raw.get("man_down_cancel_s", 30),
        presence_key=presence_key,
        presence_key_id=raw.get("presence_key_id", 1),
    )


def beacon_config(raw):
    """BeaconConfig from a checkpoint beacon's settings."""
    from patrol.beacon import SLEEP_NONE, BeaconConfig

    return BeaconConfig(
        beacon_id=device_id_of(raw),
        key=_key(raw, "key_hex", 16),
        key_id=raw.get("key_id", 1),
        step_s=raw.get("step_s", 10),
        tx_power_dbm=raw.get("tx_power_dbm", -59),
        adv_interval_ms=raw.get("adv_interval_ms", 1000),
        radio_tx_power_dbm=raw.get("radio_tx_power_dbm", 0),
        sleep_mode=raw.get("sleep_mode", SLEEP_NONE),
    )


def equipment_config(raw):
    """EquipmentConfig from an equipment tag's settings."""
    from patrol.equipment import EquipmentConfig

    return EquipmentConfig(
        tag_id=device_id_of(raw),
        key=_key(raw, "key_hex", 16),
        key_id=raw.get("key_id", 1),
        advert_interval_ms=raw.get("advert_interval_ms", 1000),
    )
