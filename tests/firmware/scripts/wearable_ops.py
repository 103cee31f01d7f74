# Runs in MicroPython: drives a Wearable on SimHal through ops given on argv.
# argv: flash_dir start_time_s op...
# ops: step[:n]  advance:<ms>  tag:<uid_hex>:<ntag424|ntag21x>:<uri>  untag  removeafter:<n>
#      advert:<rssi_dbm>:<adv_hex>[:<times>:<every_ms>]  press  release  move
#      msg:<ack|cmd>:<hex>  battery:<pct>:<mv>:<0|1>  cfg:<name>:<int>  show
#      tick:<ms>:<n> (n x: advance ms, step)  net:<0|1>
#      failwrites:<n> (the next n queue writes fail with ENOSPC, as on a full flash)
import json
import sys

from patrol.hal.sim import SimHal
from patrol.ndef import encode_uri_message
from patrol.wearable import Wearable, WearableConfig

KEY = bytes(range(32))
flash_dir = sys.argv[1]
hal = SimHal(flash_dir, start_time_s=int(sys.argv[2]))
overrides = {}
ops = sys.argv[3:]
while ops and ops[0].startswith("cfg:"):
    _, name, value = ops.pop(0).split(":")
    overrides[name] = int(value)
cfg = WearableConfig(
    device_id=0x0000A001,
    key=KEY,
    key_id=1,
    mqtt_host="127.0.0.1",
    mqtt_port=9,  # nothing listens: these scenarios run offline
    heartbeat_interval_s=overrides.get("heartbeat_interval_s", 60),
    visit_dwell_s=overrides.get("visit_dwell_s", 10),
    man_down_s=overrides.get("man_down_s", 0),
    man_down_cancel_s=overrides.get("man_down_cancel_s", 30),
    queue_max_frames=overrides.get("queue_max_frames", 5000),
)
w = Wearable(hal, cfg)


def show(label):
    frames = w.queue.peek(100000)
    print(
        json.dumps(
            {
                "key": label,
                "frames": [f.hex() for f in frames],
                "depth": w.queue_depth(),
                "acked_seq": w.acked_seq,
                "last_seq": w.last_seq,
                "last_cmd_seq": w.last_cmd_seq,
                "clock_synced": w.clock_synced,
                "time": list(hal.clock.time()),
                "heartbeat_interval_s": w.cfg.heartbeat_interval_s,
                "visit_rssi_dbm": w.cfg.visit_rssi_dbm,
                "stats": w.stats,
                "outputs": [list(e) for e in hal.outputs.log],
                "playing": w.player.playing,
            }
        )
    )


for i, op in enumerate(ops):
    parts = op.split(":")
    name = parts[0]
    if name == "step":
        for _ in range(int(parts[1]) if len(parts) > 1 else 1):
            w.step()
    elif name == "tick":
        for _ in range(int(parts[2])):
            hal.clock.advance_ms(int(parts[1]))
            w.step()
    elif name == "failwrites":
        failing = [int(parts[1])]
        real_append = w.queue.append

        def append(frame, failing=failing, real_append=real_append):
            if failing[0] > 0:
                failing[0] -= 1
                raise OSError(28)  # ENOSPC
            real_append(frame)

        w.queue.append = append
    elif name == "net":
        hal.net.up = parts[1] == "1"
    elif name == "advance":
        hal.clock.advance_ms(int(parts[1]))
    elif name == "tag":
        uri = ":".join(parts[3:])
        hal.nfc.present_tag(
            uid=bytes.fromhex(parts[1]), ndef_message=encode_uri_message(uri), kind=parts[2]
        )
    elif name == "untag":
        hal.nfc.remove_tag()
    elif name == "removeafter":
        hal.nfc.remove_after_exchanges = int(parts[1])
    elif name == "advert":
        times = int(parts[3]) if len(parts) > 3 else 1
        every_ms = int(parts[4]) if len(parts) > 4 else 0
        for _ in range(times):
            hal.radio.feed_advert(
                b"\x01\x02\x03\x04\x05\x06", int(parts[1]), bytes.fromhex(parts[2])
            )
            w.step()
            hal.clock.advance_ms(every_ms)
    elif name == "press":
        hal.button.press()
    elif name == "release":
        hal.button.release()
    elif name == "move":
        hal.accel.move()
    elif name == "msg":
        topic = w.topic_ack if parts[1] == "ack" else w.topic_cmd
        w.handle_message(topic, bytes.fromhex(parts[2]))
    elif name == "battery":
        hal.battery.set(int(parts[1]), int(parts[2]), parts[3] == "1")
    elif name == "show":
        show(parts[1] if len(parts) > 1 else f"show{i}")
    else:
        raise ValueError(op)
