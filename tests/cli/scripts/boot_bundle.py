# Runs in the MicroPython Unix port with MICROPYPATH=<board>/lib: boots what a
# provisioning bundle put on a board, the way firmware/main.py does on an ESP32
# (role from /config.json through patrol.config), but on the simulated board
# (patrol/hal/sim.py, added to the board's lib by the test: an ESP32 has real
# hardware there). A wearable runs until the edge acknowledged its BOOT frame (or
# timeout_s); a beacon or equipment tag builds one advert. Prints one JSON line.
# argv: board_dir timeout_s
import json
import sys
import time

from patrol import config
from patrol.compat import sleep_ms, ticks_diff, ticks_ms
from patrol.hal.sim import SimHal

board, timeout_s = sys.argv[1], int(sys.argv[2])
raw = config.read(board + "/config.json")
role = config.role_of(raw)
hal = SimHal(board + "/data", start_time_s=int(time.time()))
out = {"role": role, "device_id": raw["device_id"]}
if role == config.ROLE_WEARABLE:
    from patrol.wearable import Wearable

    w = Wearable(hal, config.wearable_config(raw))
    start = last = ticks_ms()
    while ticks_diff(ticks_ms(), start) < timeout_s * 1000:
        now = ticks_ms()
        hal.clock.advance_ms(ticks_diff(now, last))
        last = now
        w.step()
        if w.acked_seq >= 1 and w.queue_depth() == 0:
            break
        sleep_ms(10)
    out.update(acked_seq=w.acked_seq, last_seq=w.last_seq, stats=w.stats)
    w.shutdown()
elif role == config.ROLE_BEACON:
    from patrol.beacon import Beacon

    out["advert"] = Beacon(hal, config.beacon_config(raw)).step().hex()
else:
    from patrol.equipment import EquipmentTag

    out["advert"] = EquipmentTag(hal, config.equipment_config(raw)).step().hex()
print(json.dumps(out))
