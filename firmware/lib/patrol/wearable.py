"""Guard wearable: NFC taps, BLE checkpoint visits, equipment near me, SOS, heartbeats.

Every event becomes a signed frame (frames.py), is appended to the flash queue
(evqueue.py) *before* it is published on ``patrol/v1/dev/<id>/up`` with QoS 1,
and stays there until the edge's application ack (``.../ack``, highest contiguous
committed seq) frees it. After a reconnect everything unacknowledged is resent
byte for byte, unacknowledged SOS frames first. Commands on ``.../cmd`` are
applied only if their MAC verifies under the device key, their cmd_seq is above
the last applied one, and (once the clock is set) they have not expired.

``step()`` is one non-blocking pass of the main loop; main.py calls it forever.
Sensor time (dwell, long press, heartbeat period) uses the HAL clock so tests can
advance it; network timers (reconnect backoff, ack timeout) use real ticks.
"""

import json
import os

from patrol import FW_VERSION
from patrol.adverts import (
    TYPE_BEACON,
    TYPE_EQUIPMENT,
    build_advertisement,
    decode_advert_payload,
    encode_presence_payload,
    parse_manufacturer_data,
)
from patrol import feedback
from patrol.compat import const, ticks_add, ticks_diff, ticks_ms
from patrol.errors import ProtocolError, SignatureError
from patrol.evqueue import EventQueue
from patrol.frames import (
    BLE_VISIT,
    BOOT,
    CLOCK_JUMP,
    CMD_RESULT,
    CONFIG_HEARTBEAT_INTERVAL_S,
    CONFIG_MAN_DOWN_S,
    CONFIG_VISIT_DWELL_S,
    CONFIG_VISIT_RSSI_DBM,
    EVICTION,
    FLAG_CLOCK_UNSYNCED,
    HEARTBEAT,
    LOCATE,
    NFC_SCAN,
    RESULT_APPLIED,
    RESULT_BAD_MAC,
    RESULT_EXPIRED,
    RESULT_STALE,
    RESULT_UNSUPPORTED,
    SET_CONFIG,
    SET_TIME,
    SOS,
    SOS_BUTTON,
    SOS_MAN_DOWN,
    TAG_NTAG21X,
    TAG_NTAG424_SUN,
    ble_visit_body,
    boot_body,
    clock_jump_body,
    cmd_result_body,
    decode_ack,
    decode_command,
    decode_locate,
    decode_set_config,
    decode_set_time,
    encode_frame,
    encode_status,
    eviction_body,
    frame_seq,
    heartbeat_body,
    nfc_scan_body,
    sos_body,
    verify_command,
)
from patrol.limits import DEV_COMPANY_ID, MAX_EQUIPMENT_ITEMS
from patrol.mqtt import MQTTClient, MQTTError
from patrol.ndef import parse_uri, sun_params
from patrol.pn532 import Pn532, Pn532Error, read_ntag424_ndef

_MAX_ADVERTS_PER_STEP = const(16)  # bounded work per step; the radio queue holds the rest
_MAX_TRACKED_BEACONS = const(8)  # beacons in dwell at once; a post has a few
_VISIT_GAP_MS = const(5000)  # a dwell survives this long without a strong advert (RSSI noise)
_NFC_RETRY_MS = const(5000)  # re-initialise a PN532 that stopped answering
_LOW_BATTERY_PCT = const(20)
_STATUS_CHARGING = const(0x01)
_STATUS_IN_ZONE = const(0x02)
_STATUS_LOW_BATTERY = const(0x04)
_PRESENCE_STEP_S = const(10)
_MAX_QUEUE_DEPTH_FIELD = const(0xFFFF)
CLOCK_JUMP_REPORT_MS = const(2000)  # a SET_TIME moving the clock further than NTP jitter is reported


class WearableConfig:
    """Settings of one wearable; intervals carry their units in their names."""

    def __init__(
        self,
        device_id,
        key,
        key_id,
        mqtt_host,
        mqtt_port=1883,
        mqtt_user=None,
        mqtt_password=None,
        heartbeat_interval_s=60,
        company_id=DEV_COMPANY_ID,
        visit_rssi_dbm=-70,
        visit_dwell_s=10,
        man_down_s=0,
        man_down_cancel_s=30,
        sos_press_ms=2000,
        queue_max_frames=5000,
        keepalive_s=60,
        mqtt_retry_ms=5000,
        max_inflight=8,
        connect_timeout_ms=3000,
        reconnect_min_ms=500,
        reconnect_max_ms=30000,
        ack_timeout_ms=30000,
        nfc_enabled=True,
        presence_key=None,
        presence_key_id=1,
    ):
        if len(key) != 32:
            raise ValueError("device key must be 32 bytes")
        if not 0 <= device_id <= 0xFFFFFFFF:
            raise ValueError("device_id out of range")
        self.device_id = device_id
        self.key = bytes(key)
        self.key_id = key_id
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.mqtt_user = mqtt_user if mqtt_user is not None else "%08x" % device_id
        self.mqtt_password = mqtt_password
        self.heartbeat_interval_s = heartbeat_interval_s
        self.company_id = company_id
        self.visit_rssi_dbm = visit_rssi_dbm
        self.visit_dwell_s = visit_dwell_s
        self.man_down_s = man_down_s
        self.man_down_cancel_s = man_down_cancel_s  # pre-alarm window; 0 sends the SOS at once
        self.sos_press_ms = sos_press_ms
        self.queue_max_frames = queue_max_frames
        self.keepalive_s = keepalive_s
        self.mqtt_retry_ms = mqtt_retry_ms
        self.max_inflight = max_inflight
        self.connect_timeout_ms = connect_timeout_ms
        self.reconnect_min_ms = reconnect_min_ms
        self.reconnect_max_ms = reconnect_max_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.nfc_enabled = nfc_enabled
        self.presence_key = presence_key
        self.presence_key_id = presence_key_id


class Wearable:
    """The wearable's main loop around a HAL (hal/sim.py or hal/esp32.py)."""

    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        text = "%08x" % cfg.device_id
        self.topic_up = "patrol/v1/dev/%s/up" % text
        self.topic_ack = "patrol/v1/dev/%s/ack" % text
        self.topic_cmd = "patrol/v1/dev/%s/cmd" % text
        self.topic_status = "patrol/v1/dev/%s/status" % text
        self.queue = EventQueue(hal.flash_dir + "/queue", cfg.queue_max_frames)
        self._seq = self.queue.last_seq
        self.acked_seq = self.queue.acked_seq
        self._state_path = hal.flash_dir + "/state.json"
        self.last_cmd_seq = 0
        self._overrides = {}  # SET_CONFIG key (str) -> value, persisted
        self._load_state()
        self.clock_synced = bool(getattr(hal.clock, "synced", False))
        self.stats = {
            "nfc_errors": 0,
            "nfc_read_errors": 0,
            "bad_adverts": 0,
            "bad_acks": 0,
            "bad_commands": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "resends": 0,
            "evicted": 0,
            "store_errors": 0,
            "prealarms_cancelled": 0,
        }
        now = hal.clock.ticks_ms()
        # NFC
        self._reader = Pn532(hal.nfc, hal.clock)
        self._nfc_ready = False
        self._nfc_retry_at = now
        self._tag_uid = None
        # BLE
        self._visits = {}  # beacon_id -> [start_ticks, last_strong_ticks, max_rssi, payload, reported]
        self._equipment = {}  # tag_id -> [max_rssi, battery_pct]
        self._last_beacon_ticks = None
        self._presence_step = None
        # SOS
        self._press_start = None
        self._press_reported = False
        self._last_motion = now
        self._man_down_reported = False
        self._prealarm_until = None  # ticks deadline of a running man-down pre-alarm
        self._sos_unconfirmed = [frame_seq(f) for f in self.queue.unacked_sos()]  # not yet acked by the edge
        self.player = feedback.Player(hal.outputs, hal.clock)
        # MQTT
        self.mqtt = MQTTClient(
            text,
            cfg.mqtt_host,
            cfg.mqtt_port,
            cfg.mqtt_user,
            cfg.mqtt_password,
            keepalive_s=cfg.keepalive_s,
            will_topic=self.topic_status,
            will_payload=encode_status(cfg.device_id, False),
            will_retain=True,
            retry_ms=cfg.mqtt_retry_ms,
            max_inflight=cfg.max_inflight,
        )
        self._next_connect = ticks_ms()
        self._backoff_ms = cfg.reconnect_min_ms
        self._sent_upto = self.acked_seq
        self._sent_sos = []
        self._last_ack_progress = ticks_ms()
        hal.radio.start_scan()
        self._emit(BOOT, boot_body(FW_VERSION[0], FW_VERSION[1], FW_VERSION[2], hal.reset_cause()))
        self._next_heartbeat = ticks_add(now, cfg.heartbeat_interval_s * 1000)

    # --- persistent state ------------------------------------------------------------

    def _load_state(self):
        try:
            with open(self._state_path) as f:
                state = json.loads(f.read())
        except (OSError, ValueError):
            return
        self.last_cmd_seq = state.get("cmd_seq", 0)
        for key, value in state.get("config", {}).items():
            self._apply_config(int(key), value)
            self._overrides[key] = value

    def _save_state(self):
        # Only what signed SET_CONFIG commands changed: config.json stays the default.
        state = {"cmd_seq": self.last_cmd_seq, "config": self._overrides}
        tmp = self._state_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
        os.rename(tmp, self._state_path)

    def _apply_config(self, key, value):
        if key == CONFIG_HEARTBEAT_INTERVAL_S and value > 0:
            self.cfg.heartbeat_interval_s = value
        elif key == CONFIG_VISIT_RSSI_DBM:
            self.cfg.visit_rssi_dbm = value
        elif key == CONFIG_VISIT_DWELL_S:
            self.cfg.visit_dwell_s = value
        elif key == CONFIG_MAN_DOWN_S:
            self.cfg.man_down_s = value

    # --- public API --------------------------------------------------------------------

    def queue_depth(self):
        """Frames not yet acknowledged by the edge."""
        return self.queue.depth()

    @property
    def last_seq(self):
        """Highest seq this device has used (never reused, survives reboots)."""
        return self._seq

    @property
    def connected(self):
        return self.mqtt.connected

    def step(self):
        """One non-blocking pass: button, motion, NFC, BLE, heartbeat, MQTT and queue."""
        now = self.hal.clock.ticks_ms()
        self._poll_button(now)
        self._poll_motion(now)
        self.player.poll(now)
        if self.cfg.nfc_enabled:
            self._poll_nfc(now)
        self._poll_ble(now)
        self._advertise_presence()
        if ticks_diff(now, self._next_heartbeat) >= 0:
            self._heartbeat(now)
        self._service_mqtt()

    def shutdown(self):
        """Disconnect cleanly (the broker discards the last will)."""
        if self.mqtt.connected:
            try:
                self.mqtt.publish(self.topic_status, encode_status(self.cfg.device_id, False), 1, True)
            except MQTTError:
                pass
            self.mqtt.disconnect()

    # --- frames ------------------------------------------------------------------------

    def _emit(self, kind, body):
        """Sign, store, and (for SOS) publish at once. Returns the frame's seq."""
        if self.queue.is_full():
            self._evict()
        return self._store(kind, body)

    def _evict(self):
        # Heartbeats go first, then other events oldest first; SOS never (evqueue.py).
        for first_seq, last_seq in self.queue.evict_oldest():
            self.stats["evicted"] += last_seq - first_seq + 1
            self._store(EVICTION, eviction_body(first_seq, last_seq))

    def _store(self, kind, body):
        self._seq += 1
        time_s, time_ms = self.hal.clock.time()
        flags = 0 if self.clock_synced else FLAG_CLOCK_UNSYNCED
        cfg = self.cfg
        frame = encode_frame(kind, cfg.key_id, flags, cfg.device_id, self._seq, time_s, time_ms, body, cfg.key)
        seq = self._seq
        try:
            self.queue.append(frame)
        except OSError:
            # Flash full or a write error: make room and try once more. The frame keeps
            # its seq, so it is retried before any EVICTION record (which takes a later
            # seq) is stored. If it still fails the event is dropped and counted; its seq
            # stays used, so the cloud sees the gap as lost (never a silent renumbering).
            self.stats["store_errors"] += 1
            runs = self.queue.evict_oldest() if kind != EVICTION else []
            stored = False
            if runs:
                try:
                    self.queue.append(frame)
                    stored = True
                except OSError:
                    pass
            if not stored:
                self.queue.skip_seq(seq)
            for first_seq, last_seq in runs:
                self.stats["evicted"] += last_seq - first_seq + 1
                self._store(EVICTION, eviction_body(first_seq, last_seq))
            if not stored:
                return seq
        if kind == SOS:
            self._sos_unconfirmed.append(seq)
            if self.mqtt.connected:
                self._publish_sos(frame)
            else:
                self.player.play(feedback.OFFLINE)  # raised, but not out yet
        return seq

    def _publish_sos(self, frame):
        try:
            self.mqtt.publish(self.topic_up, frame, 1, False, True)
            self._sent_sos.append(frame_seq(frame))
        except MQTTError:
            self._on_disconnect()

    # --- inputs ------------------------------------------------------------------------

    def _poll_button(self, now):
        if self.hal.button.pressed():
            if self._prealarm_until is not None:
                # Any press during the man-down pre-alarm cancels it; the press must be
                # released before it can count towards a button SOS.
                self._prealarm_until = None
                self._last_motion = now
                self._press_start = now
                self._press_reported = True
                self.player.stop(feedback.PREALARM[0])
                self.stats["prealarms_cancelled"] += 1
                return
            if self._press_start is None:
                self._press_start = now
                self._press_reported = False
            elif not self._press_reported and ticks_diff(now, self._press_start) >= self.cfg.sos_press_ms:
                self._press_reported = True
                self._emit(SOS, sos_body(SOS_BUTTON))
        else:
            self._press_start = None

    def _poll_motion(self, now):
        moved = self.hal.accel.motion()
        if self._prealarm_until is not None:
            # Motion does not cancel the pre-alarm (a body can be moved); only the button does.
            if ticks_diff(now, self._prealarm_until) >= 0:
                self._prealarm_until = None
                self.player.stop(feedback.PREALARM[0])
                self._emit(SOS, sos_body(SOS_MAN_DOWN))
            return
        if moved:
            self._last_motion = now
            self._man_down_reported = False
        elif (
            self.cfg.man_down_s > 0
            and not self._man_down_reported
            and ticks_diff(now, self._last_motion) >= self.cfg.man_down_s * 1000
        ):
            self._man_down_reported = True
            window_ms = self.cfg.man_down_cancel_s * 1000
            if window_ms <= 0:
                self._emit(SOS, sos_body(SOS_MAN_DOWN))
                return
            self._prealarm_until = ticks_add(now, window_ms)
            self.player.play(feedback.PREALARM, window_ms)

    def _poll_nfc(self, now):
        reader = self._reader
        if not self._nfc_ready:
            if ticks_diff(now, self._nfc_retry_at) < 0:
                return
            try:
                reader.begin()
                self._nfc_ready = True
            except Pn532Error:
                self.stats["nfc_errors"] += 1
                self._nfc_retry_at = ticks_add(now, _NFC_RETRY_MS)
                return
        try:
            target = reader.in_list_passive_target()
        except Pn532Error:
            self.stats["nfc_errors"] += 1
            self._nfc_ready = False
            self._nfc_retry_at = ticks_add(now, _NFC_RETRY_MS)
            return
        if target is None:
            self._tag_uid = None
            return
        if target.uid == self._tag_uid:
            return  # the same tag is still on the reader: one scan per tap
        if len(target.uid) not in (4, 7, 10):
            self.stats["nfc_read_errors"] += 1
            self.player.play(feedback.SCAN_REJECTED)
            return
        params = None
        if target.is_iso_dep():
            try:
                uri = parse_uri(read_ntag424_ndef(reader, target.tg))
                params = sun_params(uri) if uri else None
            except (Pn532Error, ValueError):
                # Tag removed mid-read, bad status word, or a broken NDEF message: no
                # scan; the next step tries again while the tag is still present.
                self.stats["nfc_read_errors"] += 1
                self.player.play(feedback.SCAN_REJECTED)
                return
        self._tag_uid = target.uid
        if params is not None:
            body = nfc_scan_body(TAG_NTAG424_SUN, target.uid, params[0], params[1])
        else:
            body = nfc_scan_body(TAG_NTAG21X, target.uid)  # UID only: low assurance
        self._emit(NFC_SCAN, body)
        self.player.play(feedback.SCAN_OK)

    def _poll_ble(self, now):
        company_id = self.cfg.company_id
        for _, rssi_dbm, adv in self.hal.radio.poll_adverts(_MAX_ADVERTS_PER_STEP):
            try:
                payload = parse_manufacturer_data(adv).get(company_id)
                if payload is None:
                    continue
                advert = decode_advert_payload(payload)
            except ValueError:
                self.stats["bad_adverts"] += 1
                continue
            if advert.type == TYPE_BEACON:
                self._beacon_heard(advert.signer_id, rssi_dbm, payload, now)
            elif advert.type == TYPE_EQUIPMENT:
                self._equipment_heard(advert.signer_id, rssi_dbm, advert.battery_pct)
        for beacon_id in list(self._visits):
            if ticks_diff(now, self._visits[beacon_id][1]) > _VISIT_GAP_MS:
                del self._visits[beacon_id]

    def _beacon_heard(self, beacon_id, rssi_dbm, payload, now):
        self._last_beacon_ticks = now
        if rssi_dbm < self.cfg.visit_rssi_dbm:
            return  # weak: does not extend the dwell (the gap timer ends it)
        visit = self._visits.get(beacon_id)
        if visit is None:
            if len(self._visits) >= _MAX_TRACKED_BEACONS:
                return
            visit = [now, now, rssi_dbm, payload, False]
            self._visits[beacon_id] = visit
        else:
            visit[1] = now
            if rssi_dbm > visit[2]:
                visit[2] = rssi_dbm
            visit[3] = payload
        dwell_ms = ticks_diff(now, visit[0])
        if not visit[4] and dwell_ms >= self.cfg.visit_dwell_s * 1000:
            visit[4] = True  # one visit per stay
            self._emit(BLE_VISIT, ble_visit_body(visit[2], dwell_ms // 1000, self.cfg.company_id, visit[3]))

    def _equipment_heard(self, tag_id, rssi_dbm, battery_pct):
        item = self._equipment.get(tag_id)
        if item is None:
            if len(self._equipment) >= MAX_EQUIPMENT_ITEMS:
                return
            self._equipment[tag_id] = [rssi_dbm, battery_pct]
        else:
            if rssi_dbm > item[0]:
                item[0] = rssi_dbm
            item[1] = battery_pct

    def _advertise_presence(self):
        cfg = self.cfg
        if cfg.presence_key is None:
            return
        step = self.hal.clock.time()[0] // _PRESENCE_STEP_S
        if step == self._presence_step:
            return
        self._presence_step = step
        battery_pct = self.hal.battery.read()[0]
        payload = encode_presence_payload(
            cfg.presence_key_id, cfg.device_id, step, battery_pct, cfg.company_id, cfg.presence_key
        )
        self.hal.radio.advertise(build_advertisement(cfg.company_id, payload))

    def _heartbeat(self, now):
        battery_pct, battery_mv, charging = self.hal.battery.read()
        status = _STATUS_CHARGING if charging else 0
        window_ms = self.cfg.heartbeat_interval_s * 1000
        if self._last_beacon_ticks is not None and ticks_diff(now, self._last_beacon_ticks) <= window_ms:
            status |= _STATUS_IN_ZONE
        if battery_pct < _LOW_BATTERY_PCT:
            status |= _STATUS_LOW_BATTERY
        items = []
        for tag_id in sorted(self._equipment):
            item = self._equipment[tag_id]
            items.append((tag_id, item[0], item[1]))
        self._equipment = {}
        depth = min(self.queue.depth(), _MAX_QUEUE_DEPTH_FIELD)
        self._emit(HEARTBEAT, heartbeat_body(battery_pct, battery_mv, status, depth, items))
        self._next_heartbeat = ticks_add(now, window_ms)

    # --- MQTT --------------------------------------------------------------------------

    def _service_mqtt(self):
        mqtt = self.mqtt
        if not mqtt.connected:
            if not self.hal.net.is_up() or ticks_diff(ticks_ms(), self._next_connect) < 0:
                return
            if not self._connect():
                return
        try:
            mqtt.poll(self.handle_message)  # each ack or command as it arrives
            self._pump()
        except MQTTError:
            self._on_disconnect()

    def _connect(self):
        try:
            self.mqtt.connect(True, self.cfg.connect_timeout_ms)
            self.mqtt.publish(self.topic_status, encode_status(self.cfg.device_id, True), 1, True)
            self.mqtt.subscribe(self.topic_ack, 1)
            self.mqtt.subscribe(self.topic_cmd, 1)
        except MQTTError:
            self.mqtt.close()
            self.stats["connect_failures"] += 1
            self._next_connect = ticks_add(ticks_ms(), self._backoff_ms)
            self._backoff_ms = min(self._backoff_ms * 2, self.cfg.reconnect_max_ms)
            return False
        self._backoff_ms = self.cfg.reconnect_min_ms
        self._sent_upto = self.acked_seq
        self._sent_sos = []
        self._last_ack_progress = ticks_ms()
        for frame in self.queue.unacked_sos():  # SOS goes ahead of the backlog
            self._publish_sos(frame)
        return True

    def _on_disconnect(self):
        self.player.play(feedback.OFFLINE)
        self.mqtt.close()
        self.stats["disconnects"] += 1
        self._next_connect = ticks_add(ticks_ms(), self._backoff_ms)

    def _pump(self):
        """Publish queued frames after ``_sent_upto`` while the QoS 1 window has room."""
        mqtt = self.mqtt
        if self._sent_upto > self.acked_seq and ticks_diff(ticks_ms(), self._last_ack_progress) > self.cfg.ack_timeout_ms:
            # Published but never acknowledged by the edge: send it all again.
            self._sent_upto = self.acked_seq
            self._last_ack_progress = ticks_ms()
            self._sent_sos = []
            self.stats["resends"] += 1
        while mqtt.can_publish():
            room = mqtt.max_inflight - mqtt.inflight()
            frames = self.queue.peek(room, self._sent_upto)
            if not frames:
                return
            for frame in frames:
                seq = frame_seq(frame)
                if self._sent_upto <= self.acked_seq:
                    self._last_ack_progress = ticks_ms()  # the ack timer starts with the first outstanding frame
                self._sent_upto = seq
                if seq in self._sent_sos:
                    continue
                mqtt.publish(self.topic_up, frame, 1)

    def handle_message(self, topic, payload):
        """Handle one inbound MQTT message (ack or command); public so tests can inject."""
        if topic == self.topic_ack:
            try:
                device_id, acked_seq = decode_ack(payload)
            except ProtocolError:
                self.stats["bad_acks"] += 1
                return
            if device_id != self.cfg.device_id or acked_seq <= self.acked_seq:
                return
            self.queue.free_upto(acked_seq)
            self.acked_seq = self.queue.acked_seq
            if self._sent_upto < self.acked_seq:
                self._sent_upto = self.acked_seq
            self._sent_sos = [s for s in self._sent_sos if s > self.acked_seq]
            self._last_ack_progress = ticks_ms()
            pending = [s for s in self._sos_unconfirmed if s > self.acked_seq]
            if len(pending) < len(self._sos_unconfirmed):
                self.player.play(feedback.SOS_SENT)  # committed at the edge, not just PUBACKed
            self._sos_unconfirmed = pending
        elif topic == self.topic_cmd:
            self._on_command(payload)

    def _on_command(self, raw):
        try:
            command = decode_command(raw)
        except ProtocolError:
            self.stats["bad_commands"] += 1
            return
        if command.device_id != self.cfg.device_id:
            self.stats["bad_commands"] += 1
            return
        result = self.check_command(command)
        if result == RESULT_APPLIED:
            result = self._apply(command)
            self.last_cmd_seq = command.cmd_seq
            self._save_state()
        self._emit(CMD_RESULT, cmd_result_body(command.cmd_seq, result))

    def check_command(self, command):
        """RESULT_APPLIED if ``command`` may be applied now, else the refusal code."""
        if command.key_id != self.cfg.key_id:
            return RESULT_BAD_MAC
        try:
            verify_command(command, self.cfg.key)
        except SignatureError:
            return RESULT_BAD_MAC
        if command.cmd_seq <= self.last_cmd_seq:
            return RESULT_STALE
        if self.clock_synced and self.hal.clock.time()[0] > command.issued_s + command.valid_for_s:
            return RESULT_EXPIRED
        return RESULT_APPLIED

    def _apply(self, command):
        # decode_command already validated the body; only known kinds get here.
        if command.kind == SET_TIME:
            time_s, time_ms = decode_set_time(command.body)
            before_s, before_ms = self.hal.clock.time()
            self.hal.clock.set_time(time_s, time_ms)
            self.clock_synced = True
            after_s, after_ms = self.hal.clock.time()
            jump_ms = (after_s - before_s) * 1000 + after_ms - before_ms
            if jump_ms > CLOCK_JUMP_REPORT_MS or -jump_ms > CLOCK_JUMP_REPORT_MS:
                self._emit(CLOCK_JUMP, clock_jump_body(command.cmd_seq, before_s, before_ms, after_s, after_ms))
            return RESULT_APPLIED
        if command.kind == LOCATE:
            self.player.play(feedback.LOCATE, decode_locate(command.body) * 1000)
            return RESULT_APPLIED
        if command.kind == SET_CONFIG:
            for key, value in decode_set_config(command.body):
                self._apply_config(key, value)
                self._overrides[str(key)] = value
            return RESULT_APPLIED
        return RESULT_UNSUPPORTED
