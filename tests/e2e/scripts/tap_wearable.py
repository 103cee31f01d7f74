# Runs in the MicroPython Unix port: the wearable firmware on the simulated HAL,
# connected to a real broker, taps the given NTAG 424 DNA tag reads one after
# another and runs until the edge agent acknowledged every frame it made.
# argv: flash_dir host port user password key_hex timeout_s ndef_hex [ndef_hex ...]
# (every ndef_hex is one read of the tag: the NDEF message with its SUN URI)
# Prints one JSON line: the wearable's final state.
import json
import sys

from patrol.compat import sleep_ms, ticks_diff, ticks_ms
from patrol.hal.sim import SimHal
from patrol.wearable import Wearable, WearableConfig

_TAP_HOLD_MS = 1200  # a tag stays in the field this long
_BETWEEN_TAPS_MS = 500

flash_dir, host, port, user, password, key_hex, timeout_s = sys.argv[1:8]
reads = [bytes.fromhex(text) for text in sys.argv[8:]]
uid = bytes.fromhex("04a1b2c3d4e501")
hal = SimHal(flash_dir, start_time_s=int(__import__("time").time()))
cfg = WearableConfig(
    device_id=int(user, 16),
    key=bytes.fromhex(key_hex),
    key_id=1,
    mqtt_host=host,
    mqtt_port=int(port),
    mqtt_user=user,
    mqtt_password=password,
    heartbeat_interval_s=3600,
)
w = Wearable(hal, cfg)
start = last = ticks_ms()
plan = []  # (due_ms, action, argument)
due = 1000
for read in reads:
    plan.append((due, "present", read))
    plan.append((due + _TAP_HOLD_MS, "remove", None))
    due += _TAP_HOLD_MS + _BETWEEN_TAPS_MS
while ticks_diff(ticks_ms(), start) < int(timeout_s) * 1000:
    now = ticks_ms()
    hal.clock.advance_ms(ticks_diff(now, last))  # the simulated clock follows real time
    last = now
    elapsed = ticks_diff(now, start)
    while plan and w.connected and elapsed >= plan[0][0]:
        _, action, argument = plan.pop(0)
        if action == "present":
            hal.nfc.present_tag(uid=uid, ndef_message=argument)
        else:
            hal.nfc.remove_tag()
    w.step()
    if not plan and w.queue_depth() == 0 and w.mqtt.inflight() == 0:
        break
    sleep_ms(10)
print(
    json.dumps(
        {
            "depth": w.queue_depth(),
            "acked_seq": w.acked_seq,
            "last_seq": w.last_seq,
            "taps_left": len(plan),
            "stats": w.stats,
        }
    )
)
w.shutdown()
