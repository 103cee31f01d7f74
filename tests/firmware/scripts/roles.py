# Runs in MicroPython: the beacon, the equipment tag and the wearable's presence advert.
# argv: flash_dir. Prints one JSON line per observation.
import json
import sys

from patrol.beacon import Beacon, BeaconConfig
from patrol.equipment import EquipmentConfig, EquipmentTag
from patrol.hal.sim import SimHal
from patrol.wearable import Wearable, WearableConfig

KEY16 = bytes(range(16))
flash = sys.argv[1]

hal = SimHal(flash + "/beacon", start_time_s=1795579200)
beacon = Beacon(hal, BeaconConfig(0x5B7, KEY16, key_id=1, step_s=10, tx_power_dbm=-59))
adverts = [beacon.step().hex()]
hal.clock.advance_ms(9999)
adverts.append(beacon.step().hex())  # same step: same advert
hal.clock.advance_ms(1)
adverts.append(beacon.step().hex())  # next step
print(json.dumps({"key": "beacon", "adverts": adverts, "radio": hal.radio.advertising.hex()}))

hal = SimHal(flash + "/tag", start_time_s=1795579200)
hal.battery.set(15, 3500, True)
tag = EquipmentTag(hal, EquipmentConfig(0xE001, KEY16, key_id=1, advert_interval_ms=1000))
first = tag.step().hex()
hal.accel.move()
hal.clock.advance_ms(500)
same = tag.step().hex()
hal.clock.advance_ms(500)
second = tag.step().hex()
print(json.dumps({"key": "equipment", "adverts": [first, same, second], "counter": tag.counter}))

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
