# Runs in MicroPython: the PN532 driver against SimPn532, one scenario per argv[1].
# Prints one JSON line per observation; tests/firmware/test_fw_pn532.py checks them.
import json
import sys

from patrol.hal.sim import SimHal
from patrol.ndef import encode_uri_message, parse_uri, sun_params
from patrol.pn532 import (
    Pn532,
    Pn532CommandError,
    Pn532FrameError,
    Pn532Timeout,
    TagError,
    read_ntag21x_ndef,
    read_ntag424_ndef,
)

SUN_URL = "https://patrol.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
UID = b"\x04\xde\x5f\x1e\xac\xc0\x40"


def out(key, **fields):
    fields["key"] = key
    print(json.dumps(fields))


def error_name(fn):
    try:
        fn()
    except (Pn532Timeout, Pn532FrameError, Pn532CommandError, TagError) as exc:
        return type(exc).__name__
    return "ok"


hal = SimHal(sys.argv[2])
bus = hal.nfc
reader = Pn532(bus, hal.clock)
scenario = sys.argv[1]

if scenario == "transcript":
    # The exact bytes on the bus for GetFirmwareVersion, including the status polls.
    version = reader.get_firmware_version()
    out("version", version=list(version), written=[w.hex() for w in bus.written])
    bus.written = []
    reader.sam_configuration()
    out("sam", written=[w.hex() for w in bus.written])
    bus.written = []
    out(
        "no_target",
        target=reader.in_list_passive_target() is None,
        written=[w.hex() for w in bus.written],
    )
elif scenario == "ntag424":
    reader.begin()
    bus.present_tag(uid=UID, ndef_message=encode_uri_message(SUN_URL))
    target = reader.in_list_passive_target()
    message = read_ntag424_ndef(reader, target.tg)
    uri = parse_uri(message)
    picc_enc, sdmmac = sun_params(uri)
    out(
        "ntag424",
        uid=target.uid.hex(),
        sens_res=target.sens_res,
        sel_res=target.sel_res,
        iso_dep=target.is_iso_dep(),
        uri=uri,
        picc_enc=picc_enc.hex(),
        sdmmac=sdmmac.hex(),
        exchanges=bus.exchanges,
        apdus=[w.hex() for w in bus.written if len(w) > 7 and w[6] == 0x40],
    )
elif scenario == "ntag21x":
    reader.begin()
    long_uri = "https://patrol.example/checkpoint/" + "x" * 60
    bus.present_tag(
        uid=b"\x04\x11\x22\x33\x44\x55\x66",
        ndef_message=encode_uri_message(long_uri),
        kind="ntag21x",
    )
    target = reader.in_list_passive_target()
    message = read_ntag21x_ndef(reader, target.tg)
    out(
        "ntag21x",
        uid=target.uid.hex(),
        iso_dep=target.is_iso_dep(),
        uri=parse_uri(message),
        reads=bus.exchanges,
    )
elif scenario == "faults":
    reader.begin()
    bus.corrupt_responses = 1
    bus.written = []
    version = reader.get_firmware_version()
    out(
        "corrupt_once",
        version=list(version),
        nacks=reader.nacks_sent,
        written=[w.hex() for w in bus.written],
    )
    bus.corrupt_responses = 3
    out("corrupt_always", error=error_name(reader.get_firmware_version), nacks=reader.nacks_sent)
    bus.drop_acks = 1
    start = hal.clock.ticks_ms()
    out(
        "no_ack",
        error=error_name(reader.get_firmware_version),
        waited_ms=hal.clock.ticks_ms() - start,
    )
    bus.drop_responses = 1
    bus.written = []
    start = hal.clock.ticks_ms()
    out(
        "no_response",
        error=error_name(reader.get_firmware_version),
        waited_ms=hal.clock.ticks_ms() - start,
        written=[w.hex() for w in bus.written],
    )
    out("recovers", version=list(reader.get_firmware_version()))
    bus.busy_polls = 3
    out("busy_then_ready", version=list(reader.get_firmware_version()))
    bus.busy_polls = 0
    out("unknown_command", error=error_name(lambda: reader.call(0x7E)))
elif scenario == "removed":
    reader.begin()
    bus.present_tag(uid=UID, ndef_message=encode_uri_message(SUN_URL))
    target = reader.in_list_passive_target()
    bus.remove_after_exchanges = 2  # SELECT app, SELECT file, then the tag is gone
    out(
        "removed_mid_read",
        error=error_name(lambda: read_ntag424_ndef(reader, target.tg)),
        exchanges=bus.exchanges,
    )
    out("after_removal", target=reader.in_list_passive_target() is None)
