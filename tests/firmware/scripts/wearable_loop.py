# Runs in MicroPython (tests use -X heapsize=128K, 80K from ROMFS): 1,000 steps of the wearable loop
# with adverts every step, a tag tap every 50 steps, heartbeats, an SOS, acks, and
# an unreachable broker (connect attempts with backoff). Prints one JSON line.
import gc
import json
import sys

from patrol.adverts import build_advertisement, encode_beacon_payload, encode_equipment_payload
from patrol.frames import encode_ack
from patrol.hal.sim import SimHal
from patrol.ndef import encode_uri_message
from patrol.wearable import Wearable, WearableConfig

STEPS = 1000
hal = SimHal(sys.argv[1], start_time_s=1795579200)
cfg = WearableConfig(
    device_id=0x0000A001,
    key=bytes(range(32)),
    key_id=1,
    mqtt_host="127.0.0.1",
    mqtt_port=int(sys.argv[2]),
    heartbeat_interval_s=30,
    reconnect_min_ms=50,
    reconnect_max_ms=200,
    connect_timeout_ms=200,
)
gc.collect()
code_bytes = gc.mem_alloc()  # modules (bytecode, qstrs) and the script itself
w = Wearable(hal, cfg)
beacon_key = bytes(16)
alloc_at = {}
uri = encode_uri_message(
    "https://patrol.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
)
min_free = gc.mem_free()
for i in range(STEPS):
    step = (1795579200 + i) // 10
    hal.radio.feed_advert(
        b"\x01" * 6,
        -60,
        build_advertisement(
            0xFFFF, encode_beacon_payload(1, 0x5B7, step, -59, 90, 0xFFFF, beacon_key)
        ),
    )
    hal.radio.feed_advert(
        b"\x02" * 6,
        -65,
        build_advertisement(
            0xFFFF, encode_equipment_payload(1, 0xE001, 90, 3900, 0, i, 0xFFFF, beacon_key)
        ),
    )
    if i % 50 == 10:
        hal.nfc.present_tag(uid=b"\x04\xde\x5f\x1e\xac\xc0\x40", ndef_message=uri)
    if i % 50 == 20:
        hal.nfc.remove_tag()
    if i == 500:
        hal.button.press()
    if i == 504:
        hal.button.release()
    if i % 100 == 99:
        w.handle_message(w.topic_ack, encode_ack(0x0000A001, w.last_seq - 1))
    w.step()
    hal.clock.advance_ms(1000)
    # the simulated board's recordings (bounded, for tests) are not firmware state
    del hal.outputs.log[:]
    del hal.radio.adv_log[:]
    free = gc.mem_free()
    if free < min_free:
        min_free = free
    if i + 1 in (100, 1000):
        gc.collect()
        alloc_at[i + 1] = gc.mem_alloc() - code_bytes
gc.collect()
print(
    json.dumps(
        {
            "key": "loop",
            "steps": STEPS,
            "last_seq": w.last_seq,
            "depth": w.queue_depth(),
            "acked_seq": w.acked_seq,
            "min_free": min_free,
            "free_after_collect": gc.mem_free(),
            "stats": w.stats,
            "heap_total": gc.mem_free() + gc.mem_alloc(),
            "code_bytes": code_bytes,
            "state_after_100": alloc_at[100],
            "state_after_1000": alloc_at[1000],
        }
    )
)
