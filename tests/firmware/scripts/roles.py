# Runs in MicroPython: the beacon, the equipment tag and the wearable's presence advert.
# argv: flash_dir. Prints one JSON line per observation.
import json
import sys

from patrol.beacon import SLEEP_DEEP, SLEEP_LIGHT, Beacon, BeaconConfig
from patrol.equipment import EquipmentConfig, EquipmentTag
from patrol.hal.sim import SimHal
from patrol.wearable import Wearable, WearableConfig

KEY16 = bytes(range(16))
flash = sys.argv[1]


def log_of(radio):
    return [[a.hex() if a is not None else None, i] for a, i in radio.adv_log]


hal = SimHal(flash + "/beacon", start_time_s=1795579200)
hal.battery.set(64, 3700)
beacon = Beacon(
    hal,
    BeaconConfig(
        0x5B7,
        KEY16,
        key_id=1,
        step_s=10,
        tx_power_dbm=-59,
        adv_interval_ms=500,
        radio_tx_power_dbm=3,
    ),
)
adverts = [beacon.step().hex()]
hal.clock.advance_ms(9999)
adverts.append(beacon.step().hex())  # same step: same advert
hal.clock.advance_ms(1)
adverts.append(beacon.step().hex())  # next step
print(
    json.dumps(
        {
            "key": "beacon",
            "adverts": adverts,
            "radio": hal.radio.advertising.hex(),
            "log": log_of(hal.radio),
            "tx_power_dbm": hal.radio.tx_power_dbm,
        }
    )
)

for mode in (SLEEP_LIGHT, SLEEP_DEEP):
    hal = SimHal(flash + "/beacon_" + mode, start_time_s=1795579200)
    cfg = BeaconConfig(0x5B7, KEY16, key_id=1, step_s=10, adv_interval_ms=5000, sleep_mode=mode)
    beacon = Beacon(hal, cfg)
    sent = [beacon.run_once().hex() for _ in range(3)]
    print(
        json.dumps(
            {
                "key": "sleep_" + mode,
                "adverts": sent,
                "log": log_of(hal.radio),
                "sleeps": [list(s) for s in hal.power.sleeps],
                "ticks_ms": hal.clock.ticks_ms(),
            }
        )
    )

hal = SimHal(flash + "/tag", start_time_s=1795579200)
hal.battery.set(15, 3500, True)
tag = EquipmentTag(hal, EquipmentConfig(0xE001, KEY16, key_id=1, advert_interval_ms=1000))
first = tag.step().hex()
hal.accel.move()
hal.button.press()
hal.button.release()  # a short press between two adverts is latched
hal.clock.advance_ms(500)
same = tag.step().hex()
hal.clock.advance_ms(500)
second = tag.step().hex()
hal.tamper.open()
hal.battery.set(80, 3950, False)
hal.clock.advance_ms(1000)
third = tag.step().hex()
hal.clock.advance_ms(1000)
fourth = tag.step().hex()
print(
    json.dumps(
        {
            "key": "equipment",
            "adverts": [first, same, second, third, fourth],
            "counter": tag.counter,
            "interval_ms": hal.radio.adv_interval_ms,
        }
    )
)

# Reboot of the tag: the counter resumes above the reserved block, never repeating.
hal2 = SimHal(flash + "/tag", start_time_s=1795579300)
tag2 = EquipmentTag(hal2, EquipmentConfig(0xE001, KEY16, key_id=1))
tag2.step()
print(json.dumps({"key": "equipment_reboot", "counter": tag2.counter}))

hal = SimHal(flash + "/wearable", start_time_s=1795579200)
cfg = WearableConfig(
    device_id=0x0000A001,
    key=bytes(32),
    key_id=1,
    mqtt_host="127.0.0.1",
    mqtt_port=9,
    presence_key=KEY16,
    presence_key_id=2,
)
w = Wearable(hal, cfg)
w.step()
print(json.dumps({"key": "presence", "advert": hal.radio.advertising.hex()}))
