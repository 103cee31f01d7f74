# Runs in the MicroPython Unix port: the wearable firmware on the simulated HAL taps
# an NTAG 424 DNA tag at a steady pace, connected to a real broker, whatever happens
# to the broker (a guard keeps patrolling while the network is down: taps then wait
# in the flash queue). Runs until every tap is made and the edge agent acknowledged
# every frame, or timeout_s passes. Prints one JSON line: the wearable's final state.
# argv: flash_dir host port user password key_hex timeout_s reads_path tap_interval_ms
# reads_path: one hex NDEF message (a fresh SUN URI read of the tag) per line
import json
import sys

from patrol.compat import sleep_ms, ticks_diff, ticks_ms
from patrol.hal.sim import SimHal
from patrol.wearable import Wearable, WearableConfig

_STEP_MS = 10

flash_dir, host, port, user, password, key_hex, timeout_s, reads_path, interval = sys.argv[1:10]
tap_interval_ms = int(interval)
with open(reads_path) as f:
    reads = [bytes.fromhex(line.strip()) for line in f if line.strip()]
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
    reconnect_min_ms=250,
    reconnect_max_ms=1000,  # back within a second of the broker's return
    connect_timeout_ms=1000,
)
w = Wearable(hal, cfg)
start = last = ticks_ms()
next_tap = 500
present = False
offline_taps = 0
while ticks_diff(ticks_ms(), start) < int(timeout_s) * 1000:
    now = ticks_ms()
    hal.clock.advance_ms(ticks_diff(now, last))  # the simulated clock follows real time
    last = now
    elapsed = ticks_diff(now, start)
    if present and elapsed >= next_tap - tap_interval_ms // 2:
        hal.nfc.remove_tag()
        present = False
    elif not present and reads and elapsed >= next_tap:
        hal.nfc.present_tag(uid=uid, ndef_message=reads.pop(0))
        present = True
        next_tap += tap_interval_ms
        if not w.connected:
            offline_taps += 1
    w.step()
    if not reads and not present and w.queue_depth() == 0 and w.mqtt.inflight() == 0:
        break
    sleep_ms(_STEP_MS)
print(
    json.dumps(
        {
            "depth": w.queue_depth(),
            "acked_seq": w.acked_seq,
            "last_seq": w.last_seq,
            "taps_left": len(reads),
            "offline_taps": offline_taps,
            "stats": w.stats,
            "retransmits": w.mqtt.retransmits,
        }
    )
)
w.shutdown()
