"""Wearable entry point on an ESP32: read /config.json, build the HAL, loop forever.

config.json (see firmware/README.md)::

    {"device_id": "0000a001", "key_hex": "<64 hex>", "key_id": 1,
     "wifi_ssid": "...", "wifi_password": "...",
     "mqtt_host": "192.168.1.10", "mqtt_port": 1883, "mqtt_password": "...",
     "heartbeat_interval_s": 60, "step_interval_ms": 50}
"""

import json

import machine

from patrol.compat import sleep_ms
from patrol.hal.esp32 import Esp32Hal
from patrol.wearable import Wearable, WearableConfig

_CONFIG_PATH = "/config.json"
_FLASH_DIR = "/data"
_WATCHDOG_MS = 30000  # a hung loop reboots the device; the queue survives


def load_config(path=_CONFIG_PATH):
    with open(path) as f:
        raw = json.loads(f.read())
    device_id_text = raw["device_id"]
    if len(device_id_text) != 8:
        raise ValueError("device_id must be 8 hex digits")
    cfg = WearableConfig(
        device_id=int(device_id_text, 16),
        key=bytes.fromhex(raw["key_hex"]),
        key_id=raw.get("key_id", 1),
        mqtt_host=raw["mqtt_host"],
        mqtt_port=raw.get("mqtt_port", 1883),
        mqtt_user=device_id_text,
        mqtt_password=raw["mqtt_password"],
        heartbeat_interval_s=raw.get("heartbeat_interval_s", 60),
        visit_rssi_dbm=raw.get("visit_rssi_dbm", -70),
        visit_dwell_s=raw.get("visit_dwell_s", 10),
        man_down_s=raw.get("man_down_s", 0),
        man_down_cancel_s=raw.get("man_down_cancel_s", 30),
    )
    return raw, cfg


def main():
    raw, cfg = load_config()
    hal = Esp32Hal(_FLASH_DIR, raw["wifi_ssid"], raw["wifi_password"])
    wearable = Wearable(hal, cfg)
    step_interval_ms = raw.get("step_interval_ms", 50)
    watchdog = machine.WDT(timeout=_WATCHDOG_MS)
    while True:
        wearable.step()
        watchdog.feed()
        sleep_ms(step_interval_ms)


main()
