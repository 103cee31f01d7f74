# Runs in MicroPython or CPython: a Wearable on SimHal against a real broker.
# argv: flash_dir host port user password timeout_s [backlog]
# With "backlog" the network is down first: BOOT, ten heartbeats and an SOS pile up
# in the flash queue, then the network comes up and the SOS must go out first.
# Taps a tag after the first second, then runs until every frame is acknowledged and a
# command was applied (or timeout_s passes), prints one JSON line, and drops the TCP
# connection without DISCONNECT so the broker publishes the retained last will.
import json
import sys

from patrol.compat import sleep_ms, ticks_diff, ticks_ms
from patrol.hal.sim import SimHal
from patrol.ndef import encode_uri_message
from patrol.wearable import Wearable, WearableConfig

flash_dir, host, port, user, password, timeout_s = sys.argv[1:7]
hal = SimHal(flash_dir, start_time_s=1795579200)
cfg = WearableConfig(
    device_id=int(user, 16),
    key=bytes(range(32)),
    key_id=1,
    mqtt_host=host,
    mqtt_port=int(port),
    mqtt_user=user,
    mqtt_password=password,
    heartbeat_interval_s=3600,
    keepalive_s=30,
)
backlog = len(sys.argv) > 7 and sys.argv[7] == "backlog"
if backlog:
    cfg.heartbeat_interval_s = 1
    hal.net.up = False
w = Wearable(hal, cfg)
if backlog:
    for _ in range(10):
        hal.clock.advance_ms(1000)
        w.step()
    hal.button.press()
    w.step()
    hal.clock.advance_ms(2500)
    w.step()
    hal.button.release()
    w.cfg.heartbeat_interval_s = 3600
    hal.clock.advance_ms(1000)
    w.step()  # the last heartbeat before the long interval
    hal.net.up = True
start = ticks_ms()
tapped = False
last = start
while ticks_diff(ticks_ms(), start) < int(timeout_s) * 1000:
    now = ticks_ms()
    hal.clock.advance_ms(ticks_diff(now, last))  # the simulated clock follows real time
    last = now
    if not tapped and ticks_diff(now, start) > 1000 and w.connected:
        hal.nfc.present_tag(
            uid=b"\x04\xde\x5f\x1e\xac\xc0\x40",
            ndef_message=encode_uri_message(
                "https://patrol.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
            ),
        )
        tapped = True
    w.step()
    if tapped and w.queue_depth() == 0 and w.last_cmd_seq >= 1 and w.mqtt.inflight() == 0:
        break
    sleep_ms(10)
print(
    json.dumps(
        {
            "key": "final",
            "depth": w.queue_depth(),
            "acked_seq": w.acked_seq,
            "last_seq": w.last_seq,
            "last_cmd_seq": w.last_cmd_seq,
            "clock_synced": w.clock_synced,
            "time_s": hal.clock.time()[0],
            "stats": w.stats,
            "connected": w.connected,
            "pubacks": w.mqtt.pubacks,
        }
    )
)
w.mqtt.close()  # no DISCONNECT: the broker publishes the last will
