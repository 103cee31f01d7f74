# Runs in MicroPython: computes every shared test vector with the firmware code and
# prints one JSON line per vector; tests/firmware/test_fw_vectors.py compares them.
import json
import sys

from patrol import adverts, frames, pn532
from patrol.errors import ProtocolError
from patrol.hmac256 import hmac_sha256

VECTORS = sys.argv[1]


def load(name):
    with open(VECTORS + "/" + name) as f:
        return json.loads(f.read())


def out(key, **fields):
    fields["key"] = key
    print(json.dumps(fields))


def unhex(text):
    return bytes.fromhex(text) if text else b""


def body_for(kind, body):
    if kind == frames.NFC_SCAN:
        picc = body.get("picc_enc_hex")
        mac = body.get("sdmmac_hex")
        return frames.nfc_scan_body(
            body["tag_type"],
            unhex(body["uid_hex"]),
            unhex(picc) if picc else None,
            unhex(mac) if mac else None,
        )
    if kind == frames.BLE_VISIT:
        return frames.ble_visit_body(
            body["rssi_dbm"], body["dwell_s"], body["company_id"], unhex(body["adv_hex"])
        )
    if kind == frames.HEARTBEAT:
        items = [(i["tag_id"], i["rssi_dbm"], i["battery_pct"]) for i in body["items"]]
        return frames.heartbeat_body(
            body["battery_pct"], body["battery_mv"], body["status"], body["queue_depth"], items
        )
    if kind == frames.SOS:
        return frames.sos_body(body["trigger"])
    if kind == frames.EVICTION:
        return frames.eviction_body(body["first_seq"], body["last_seq"], body["reason"])
    if kind == frames.BOOT:
        return frames.boot_body(
            body["fw_major"], body["fw_minor"], body["fw_patch"], body["reset_cause"]
        )
    if kind == frames.CMD_RESULT:
        return frames.cmd_result_body(body["cmd_seq"], body["result"])
    if kind == frames.CLOCK_JUMP:
        return frames.clock_jump_body(
            body["cmd_seq"], body["before_s"], body["before_ms"], body["after_s"], body["after_ms"]
        )
    raise ValueError("kind")


def reason(fn):
    try:
        fn()
    except ProtocolError as exc:
        return exc.reason
    return "ok"


# frames.json: encode every event frame from its fields
for v in load("frames.json")["vectors"]:
    h = v["header"]
    body = body_for(h["kind"], v["body"])
    frame = frames.encode_frame(
        h["kind"],
        h["key_id"],
        h["flags"],
        h["device_id"],
        h["seq"],
        h["time_s"],
        h["time_ms"],
        body,
        unhex(v["key"]),
    )
    out(
        "frames:" + v["name"],
        body_hex=body.hex(),
        frame_hex=frame.hex(),
        seq=frames.frame_seq(frame),
    )

# commands.json: decode + verify every command, re-encode it; acks; status
doc = load("commands.json")
for v in doc["commands"]:
    raw = unhex(v["frame_hex"])
    cmd = frames.decode_command(raw)
    frames.verify_command(cmd, unhex(v["key"]))
    if cmd.kind == frames.SET_TIME:
        t = frames.decode_set_time(cmd.body)
        decoded = {"time_s": t[0], "time_ms": t[1]}
    elif cmd.kind == frames.LOCATE:
        decoded = {"duration_s": frames.decode_locate(cmd.body)}
    else:
        decoded = {
            "entries": [{"key": k, "value": val} for k, val in frames.decode_set_config(cmd.body)]
        }
    again = frames.encode_command(
        cmd.kind,
        cmd.key_id,
        cmd.device_id,
        cmd.cmd_seq,
        cmd.issued_s,
        cmd.valid_for_s,
        cmd.body,
        unhex(v["key"]),
    )
    out(
        "commands:" + v["name"],
        header={
            "kind": cmd.kind,
            "key_id": cmd.key_id,
            "device_id": cmd.device_id,
            "cmd_seq": cmd.cmd_seq,
            "issued_s": cmd.issued_s,
            "valid_for_s": cmd.valid_for_s,
        },
        body=decoded,
        body_hex=cmd.body.hex(),
        reencoded_hex=again.hex(),
    )
for i, v in enumerate(doc["acks"]):
    device_id, acked_seq = frames.decode_ack(unhex(v["frame_hex"]))
    out(
        f"acks:{i}",
        device_id=device_id,
        acked_seq=acked_seq,
        frame_hex=frames.encode_ack(device_id, acked_seq).hex(),
    )
for i, v in enumerate(doc["status"]):
    out(f"status:{i}", frame_hex=frames.encode_status(v["device_id"], v["state"] == 1).hex())

# invalid.json: the commands / acks / adverts cases must fail with the same reason
bad = load("invalid.json")
for v in bad["commands"]:
    raw = unhex(v["hex"])
    key = unhex(v["key"]) if "key" in v else None

    def check(raw=raw, key=key):
        cmd = frames.decode_command(raw)
        if key is not None:
            frames.verify_command(cmd, key)

    out("invalid_commands:" + v["name"], error=reason(check))
for v in bad["acks"]:
    raw = unhex(v["hex"])
    out("invalid_acks:" + v["name"], error=reason(lambda raw=raw: frames.decode_ack(raw)))
for v in bad["adverts"]:
    raw = unhex(v["hex"])
    key = unhex(v["key"]) if "key" in v else None

    def check_advert(raw=raw, key=key, company_id=v["company_id"]):
        adverts.decode_advert_payload(raw)
        if key is not None:
            adverts.verify_advert(company_id, raw, key)

    out("invalid_adverts:" + v["name"], error=reason(check_advert))

# adverts.json: encode payloads and full adverts, parse them back
for v in load("adverts.json")["vectors"]:
    f = v["fields"]
    key = unhex(v["key"])
    company_id = v["company_id"]
    if f["type"] == adverts.TYPE_BEACON:
        payload = adverts.encode_beacon_payload(
            f["key_id"],
            f["beacon_id"],
            f["step"],
            f["tx_power_dbm"],
            f["battery_pct"],
            company_id,
            key,
        )
    elif f["type"] == adverts.TYPE_EQUIPMENT:
        payload = adverts.encode_equipment_payload(
            f["key_id"],
            f["tag_id"],
            f["battery_pct"],
            f["battery_mv"],
            f["flags"],
            f["counter"],
            company_id,
            key,
        )
    else:
        payload = adverts.encode_presence_payload(
            f["key_id"], f["device_id"], f["step"], f["battery_pct"], company_id, key
        )
    adv = adverts.build_advertisement(company_id, payload)
    parsed = adverts.parse_manufacturer_data(unhex(v["advertisement_hex"]))
    decoded = adverts.decode_advert_payload(parsed[company_id])
    adverts.verify_advert(company_id, parsed[company_id], key)
    out(
        "adverts:" + v["name"],
        payload_hex=payload.hex(),
        advertisement_hex=adv.hex(),
        parsed_payload_hex=parsed[company_id].hex(),
        signer_id=decoded.signer_id,
        step=decoded.step,
        mac_hex=decoded.mac.hex(),
    )

# rfc4231_hmac_sha256.json
for v in load("rfc4231_hmac_sha256.json")["vectors"]:
    mac = hmac_sha256(unhex(v["key"]), unhex(v["data"]))[: v["output_bytes"]]
    out("hmac:" + v["name"], expected=mac.hex())

# pn532_frames.json: encode what the host sends, decode what the PN532 sends
for v in load("pn532_frames.json")["frames"]:
    raw = unhex(v["frame_hex"])
    kind, tfi, payload = pn532.decode_frame(raw)
    names = {
        pn532.FRAME_INFO: "info",
        pn532.FRAME_ACK: "ack",
        pn532.FRAME_NACK: "nack",
        pn532.FRAME_ERROR: "error",
    }
    record = {"type": names[kind]}
    if kind == pn532.FRAME_INFO:
        record["tfi"] = f"{tfi:02x}"
        record["data_hex"] = payload.hex()
        record["encoded_hex"] = pn532.encode_frame(tfi, payload).hex()
    out("pn532:" + v["name"], **record)
