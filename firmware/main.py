"""Device entry point on an ESP32: read /config.json, build the HAL, loop forever.

/config.json is what ``patrol provision`` writes into a device bundle (see
lib/patrol/config.py and firmware/README.md); its ``role`` picks the logic: a
wearable (the default), a BLE checkpoint beacon or an equipment tag.
"""

import machine

from patrol import config
from patrol.compat import sleep_ms
from patrol.hal.esp32 import Esp32Hal

_CONFIG_PATH = "/config.json"
_FLASH_DIR = "/data"
_WATCHDOG_MS = 30000  # a hung loop reboots the device; the queue survives


def main():
    raw = config.read(_CONFIG_PATH)
    role = config.role_of(raw)
    if role == config.ROLE_WEARABLE:
        from patrol.wearable import Wearable

        hal = Esp32Hal(_FLASH_DIR, raw["wifi_ssid"], raw["wifi_password"])
        step = Wearable(hal, config.wearable_config(raw)).step
        step_interval_ms = raw.get("step_interval_ms", 50)
    elif role == config.ROLE_BEACON:
        from patrol.beacon import Beacon

        hal = Esp32Hal(_FLASH_DIR, None, None, wifi=False)
        step = Beacon(hal, config.beacon_config(raw)).run_once  # sleeps between adverts
        step_interval_ms = 0
    else:
        from patrol.equipment import EquipmentTag

        hal = Esp32Hal(_FLASH_DIR, None, None, wifi=False)
        step = EquipmentTag(hal, config.equipment_config(raw)).step
        step_interval_ms = raw.get("step_interval_ms", 100)
    watchdog = machine.WDT(timeout=_WATCHDOG_MS)
    while True:
        step()
        watchdog.feed()
        if step_interval_ms:
            sleep_ms(step_interval_ms)


main()
