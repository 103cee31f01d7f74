# Runs in MicroPython: the MQTT client against a scripted peer (test_fw_mqtt_wire.py).
# argv: port. Connects with a will, subscribes, publishes one QoS 1 message, then polls
# until it was acknowledged (the peer withholds the first PUBACK to force a DUP resend),
# a message arrived, and a PINGRESP came back.
import json
import sys

from patrol.compat import sleep_ms, ticks_diff, ticks_ms
from patrol.mqtt import MQTTClient

client = MQTTClient(
    "0000a001",
    "127.0.0.1",
    int(sys.argv[1]),
    "0000a001",
    "pw",
    keepalive_s=1,
    will_topic="patrol/v1/dev/0000a001/status",
    will_payload=b"\x01\x00\x00\x00\xa0\x01",
    will_retain=True,
    retry_ms=300,
)
session_present = client.connect()
sub_pid = client.subscribe("patrol/v1/dev/0000a001/ack", 1)
pid = client.publish("patrol/v1/dev/0000a001/up", b"frame-bytes", 1)
received = []
start = ticks_ms()
while ticks_diff(ticks_ms(), start) < 5000:
    received += client.poll()
    if client.is_acked(pid) and received and client.pingresps:
        break
    sleep_ms(10)
print(
    json.dumps(
        {
            "key": "dup",
            "session_present": session_present,
            "pid": pid,
            "sub_pid": sub_pid,
            "acked": client.is_acked(pid),
            "retransmits": client.retransmits,
            "pubacks": client.pubacks,
            "suback": client.suback_codes.get(sub_pid),
            "received": [[t, p.hex()] for t, p in received],
        }
    )
)
client.disconnect()
