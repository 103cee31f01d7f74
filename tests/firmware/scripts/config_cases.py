# Runs in MicroPython: parse config.json documents (argv[1]: a file holding a JSON list of
# cases; the Unix port interns argv strings as qstrs and dies on one of 256 bytes or more)
# with patrol.config, as main.py does at boot. Prints one JSON line per case: the settings
# it produced or the ValueError's message.
import json
import sys

from patrol import config

with open(sys.argv[1]) as f:
    cases = json.loads(f.read())
for i, raw in enumerate(cases):
    try:
        role = config.role_of(raw)
        if role == config.ROLE_WEARABLE:
            cfg = config.wearable_config(raw)
            presence = cfg.presence_key is not None
            got = [role, cfg.device_id, cfg.key_id, cfg.mqtt_user, cfg.mqtt_port, presence]
        elif role == config.ROLE_BEACON:
            cfg = config.beacon_config(raw)
            got = [role, cfg.beacon_id, cfg.key_id, cfg.adv_interval_ms, cfg.sleep_mode]
        else:
            cfg = config.equipment_config(raw)
            got = [role, cfg.tag_id, cfg.key_id, cfg.advert_interval_ms]
        print(json.dumps({"key": str(i), "ok": got}))
    except ValueError as exc:
        print(json.dumps({"key": str(i), "error": str(exc)}))
