"""Simulated board for tests and the demo: clock, flash dir, PN532 on I2C, BLE radio,
SOS button, accelerometer, battery, network.

``SimPn532`` answers byte-exact PN532 frames over a simulated I2C bus: every
command gets an ACK, then a response frame with correct LCS/DCS, each read
prefixed by the I2C status byte (0x01 ready, 0x00 busy). It carries a simulated
NTAG 424 DNA (ISO SELECT / READ BINARY of the NDEF file E104) or NTAG21x (READ of
4-page blocks). Fault injection: corrupted checksums, dropped ACKs or responses,
and the tag leaving the field after N exchanges.
"""

import struct

from patrol.compat import makedirs
from patrol.pn532 import (
    ACK_FRAME,
    ERROR_FRAME,
    I2C_ADDRESS,
    NACK_FRAME,
    TFI_HOST,
    TFI_PN532,
    Pn532FrameError,
    decode_frame,
    encode_frame,
)

_ENODEV = 19
_MAX_WRITTEN_LOG = 32  # frames kept in SimPn532.written
_FIRMWARE = (0x32, 0x01, 0x06, 0x07)  # IC PN532, firmware 1.6, supports ISO-A/B and ISO 18092

_SW_OK = b"\x90\x00"
_SW_NOT_FOUND = b"\x6a\x82"
_SW_NOT_ALLOWED = b"\x69\x86"
_SW_WRONG_P1P2 = b"\x6b\x00"
_SW_INS_UNKNOWN = b"\x6d\x00"
_NDEF_AID = b"\xd2\x76\x00\x00\x85\x01\x01"

# Activation data the sim reports. SENS_RES/SAK follow ISO 14443-3 (SAK bit 6 =
# ISO-DEP); the ATS is illustrative only, the firmware never interprets it.
_NTAG424_SENS_RES = b"\x03\x44"
_NTAG424_SAK = 0x20
_NTAG424_ATS = b"\x06\x77\x77\x71\x02\x80"
_NTAG21X_SENS_RES = b"\x00\x44"
_NTAG21X_SAK = 0x00


class SimClock:
    """Monotonic ticks that tests advance, plus a settable UTC wall clock."""

    def __init__(self, start_time_s=1767225600, synced=False):
        self._ticks_ms = 0
        self._epoch_ms = start_time_s * 1000
        self.synced = synced

    def ticks_ms(self):
        return self._ticks_ms

    def advance_ms(self, duration_ms):
        self._ticks_ms += duration_ms

    def advance_s(self, duration_s):
        self._ticks_ms += duration_s * 1000

    def sleep_ms(self, duration_ms):
        self._ticks_ms += duration_ms

    def time(self):
        total_ms = self._epoch_ms + self._ticks_ms
        return total_ms // 1000, total_ms % 1000

    def set_time(self, time_s, time_ms):
        self._epoch_ms = time_s * 1000 + time_ms - self._ticks_ms
        self.synced = True


class SimNtag424:
    """NTAG 424 DNA answering the ISO 7816-4 APDUs of an NFC Forum Type 4 NDEF read.

    ``ndef`` is the NDEF message bytes, or a callable returning fresh bytes on each
    application SELECT (a real tag's SUN counter moves on every read).
    """

    def __init__(self, uid, ndef):
        self.uid = bytes(uid)
        # a fixed message, or a callable returning a fresh one per read
        self._ndef_fn = ndef if callable(ndef) else None
        self._ndef = b"" if callable(ndef) else bytes(ndef)
        self._file = b""
        self._app = False
        self._selected = False
        self.sens_res = _NTAG424_SENS_RES
        self.sak = _NTAG424_SAK
        self.ats = _NTAG424_ATS

    def activate(self):
        self._app = False
        self._selected = False

    def exchange(self, apdu):
        if len(apdu) < 4:
            return _SW_INS_UNKNOWN
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        if cla != 0x00:
            return _SW_INS_UNKNOWN
        if ins == 0xA4 and p1 == 0x04:
            lc = apdu[4] if len(apdu) > 4 else 0
            if bytes(apdu[5 : 5 + lc]) != _NDEF_AID:
                return _SW_NOT_FOUND
            # the callable is the test's own (returns bytes); pyright only knows "object"
            ndef = bytes(self._ndef_fn()) if self._ndef_fn is not None else self._ndef  # pyright: ignore[reportArgumentType]
            self._file = struct.pack(">H", len(ndef)) + bytes(ndef)
            self._app = True
            self._selected = False
            return _SW_OK
        if ins == 0xA4 and p1 == 0x00:
            if not self._app or bytes(apdu[5:7]) != b"\xe1\x04":
                return _SW_NOT_FOUND
            self._selected = True
            return _SW_OK
        if ins == 0xB0:
            if not self._selected:
                return _SW_NOT_ALLOWED
            offset = (p1 << 8) | p2
            le = apdu[4] if len(apdu) > 4 else 0
            if le == 0:
                le = 256
            if offset > len(self._file):
                return _SW_WRONG_P1P2
            return self._file[offset : offset + le] + _SW_OK
        return _SW_INS_UNKNOWN


class SimNtag21x:
    """NTAG21x (NFC Forum Type 2): READ (0x30) returns 16 bytes from the page given."""

    def __init__(self, uid, ndef, total_pages=45):
        self.uid = bytes(uid)
        memory = bytearray(total_pages * 4)
        memory[0:3] = self.uid[0:3]
        memory[4:8] = self.uid[3:7]
        memory[12:16] = b"\xe1\x10\x12\x00"  # capability container: NDEF, v1.0, 144 bytes, rw
        if len(ndef) < 0xFF:
            tlv = bytes((0x03, len(ndef))) + bytes(ndef) + b"\xfe"
        else:
            tlv = bytes((0x03, 0xFF)) + struct.pack(">H", len(ndef)) + bytes(ndef) + b"\xfe"
        memory[16 : 16 + len(tlv)] = tlv
        self.memory = bytes(memory)
        self.sens_res = _NTAG21X_SENS_RES
        self.sak = _NTAG21X_SAK
        self.ats = b""

    def activate(self):
        pass

    def exchange(self, data):
        if len(data) == 2 and data[0] == 0x30:
            start = data[1] * 4
            block = self.memory[start : start + 16]
            return block + bytes(16 - len(block))
        return None


class SimPn532:
    """A PN532 on a simulated I2C bus (machine.I2C-like ``writeto`` / ``readfrom``)."""

    def __init__(self, address=I2C_ADDRESS):
        self.address = address
        self.tag = None
        self._active = False
        self._out = []
        self._last_response = None
        self.written = []  # the last frames the host wrote (bounded), for tests
        self.busy_polls = 0  # status polls answered "busy" before each frame is ready
        self._busy_left = 0
        self.corrupt_responses = 0  # next N responses get a wrong DCS
        self.drop_acks = 0  # next N commands get no ACK and no response
        self.drop_responses = 0  # next N commands get an ACK but no response
        self.remove_after_exchanges = None  # tag leaves the field after N more exchanges
        self.exchanges = 0

    # tags

    def present_tag(self, uid, ndef_message=b"", kind="ntag424"):
        """A tag enters the field. ``kind`` is "ntag424" or "ntag21x"; ``ndef_message``
        may be a callable for a fresh message (SUN counter) on every read."""
        if kind == "ntag424":
            self.tag = SimNtag424(uid, ndef_message)
        elif kind == "ntag21x":
            self.tag = SimNtag21x(uid, ndef_message)
        else:
            raise ValueError("unknown tag kind")
        self._active = False

    def remove_tag(self):
        """The tag leaves the field."""
        self.tag = None
        self._active = False

    # I2C bus

    def writeto(self, address, buf):
        if address != self.address:
            raise OSError(_ENODEV)
        buf = bytes(buf)
        if len(self.written) >= _MAX_WRITTEN_LOG:
            self.written.pop(0)
        self.written.append(buf)
        if buf == ACK_FRAME:  # host aborts the current command
            self._out = []
            return len(buf)
        if buf == NACK_FRAME:  # host asks for the last response again
            if self._last_response is not None:
                self._queue(self._maybe_corrupt(self._last_response))
            return len(buf)
        try:
            kind, tfi, payload = decode_frame(buf)
        except Pn532FrameError:
            return len(buf)  # a frame with a bad checksum is ignored: the host times out
        if tfi != TFI_HOST or not payload:
            return len(buf)
        if self.drop_acks:
            self.drop_acks -= 1
            return len(buf)
        self._queue(ACK_FRAME)
        response = self._execute(payload[0], payload[1:])
        if self.drop_responses:
            self.drop_responses -= 1
            return len(buf)
        frame = ERROR_FRAME if response is None else encode_frame(TFI_PN532, response)
        self._last_response = frame
        self._queue(self._maybe_corrupt(frame))
        return len(buf)

    def _maybe_corrupt(self, frame):
        # Line noise: the DCS arrives wrong; a NACK makes the PN532 send it again.
        if not self.corrupt_responses:
            return frame
        self.corrupt_responses -= 1
        return frame[:-2] + bytes(((frame[-2] + 1) & 0xFF,)) + frame[-1:]

    def _queue(self, frame):
        if not self._out:
            self._busy_left = self.busy_polls
        self._out.append(frame)

    def readfrom(self, address, nbytes):
        if address != self.address:
            raise OSError(_ENODEV)
        if not self._out:
            return bytes(nbytes)  # status byte 0x00: busy
        if self._busy_left:
            self._busy_left -= 1
            return bytes(nbytes)
        if nbytes == 1:
            return b"\x01"  # a status poll leaves the frame in place
        frame = self._out.pop(0)
        self._busy_left = self.busy_polls if self._out else 0
        data = b"\x01" + frame
        if len(data) >= nbytes:
            return data[:nbytes]
        return data + bytes(nbytes - len(data))

    def _execute(self, command, params):
        if command == 0x02:
            return bytes((0x03,) + _FIRMWARE)
        if command == 0x14:
            return b"\x15"
        if command == 0x32:
            return b"\x33"
        if command == 0x52:
            self._active = False
            return b"\x53\x00"
        if command == 0x4A:
            if len(params) < 2 or params[1] != 0x00:
                return None  # only 106 kbps type A is simulated
            if self.tag is None:
                return b"\x4b\x00"
            self.tag.activate()
            self._active = True
            tag = self.tag
            return (
                b"\x4b\x01\x01" + tag.sens_res + bytes((tag.sak, len(tag.uid))) + tag.uid + tag.ats
            )
        if command == 0x40:
            if len(params) < 1:
                return None
            if self.remove_after_exchanges is not None:
                if self.remove_after_exchanges <= 0:
                    self.remove_tag()
                    self.remove_after_exchanges = None
                else:
                    self.remove_after_exchanges -= 1
            if self.tag is None or not self._active:
                return b"\x41\x01"  # status 0x01: the target did not answer
            self.exchanges += 1
            answer = self.tag.exchange(bytes(params[1:]))
            if answer is None:
                return b"\x41\x01"
            return b"\x41\x00" + answer
        return None  # unknown command: error frame


_MAX_LOG = 64  # entries kept in each recording list (adverts, outputs, sleeps)


def _record(log, entry):
    if len(log) >= _MAX_LOG:
        log.pop(0)
    log.append(entry)


class SimRadio:
    """BLE radio: tests feed scanned adverts; ``advertising`` is what we send.

    ``adv_log`` records every ``advertise()`` as (adv_data or None, interval_ms);
    ``tx_power_dbm`` is the last power set.
    """

    def __init__(self, max_queued=32):
        self._queue = []
        self._max_queued = max_queued
        self.dropped = 0
        self.scanning = False
        self.advertising = None
        self.adv_interval_ms = None
        self.tx_power_dbm = None
        self.adv_log = []

    def start_scan(self):
        self.scanning = True

    def feed_advert(self, addr, rssi_dbm, adv_data):
        """An advert was heard (what the scan IRQ would copy into its queue)."""
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        self._queue.append((bytes(addr), rssi_dbm, bytes(adv_data)))

    def poll_adverts(self, max_n=16):
        out = self._queue[:max_n]
        self._queue = self._queue[max_n:]
        return out

    def advertise(self, adv_data, interval_ms=None):
        self.advertising = bytes(adv_data) if adv_data is not None else None
        self.adv_interval_ms = interval_ms if adv_data is not None else None
        _record(self.adv_log, (self.advertising, self.adv_interval_ms))

    def set_tx_power(self, tx_power_dbm):
        self.tx_power_dbm = tx_power_dbm


class SimButton:
    """Level (``pressed``) plus a press latch (``was_pressed``), like a pin with an edge IRQ."""

    def __init__(self):
        self._pressed = False
        self._latched = False

    def press(self):
        self._pressed = True
        self._latched = True

    def release(self):
        self._pressed = False

    def pressed(self):
        return self._pressed

    def was_pressed(self):
        latched = self._latched
        self._latched = False
        return latched


class SimTamper:
    """Tamper switch: ``opened()`` is latched until read, like the ESP32 pin IRQ."""

    def __init__(self):
        self._opened = False

    def open(self):
        self._opened = True

    def opened(self):
        opened = self._opened
        self._opened = False
        return opened


class SimOutputs:
    """LED / buzzer / vibration lines; ``log`` records (ticks_ms, mask) on every change."""

    def __init__(self, clock):
        self._clock = clock
        self.mask = 0
        self.log = []

    def set(self, mask):
        self.mask = mask
        _record(self.log, (self._clock.ticks_ms(), mask))


class SimPower:
    """Sleep modes: records (mode, duration_ms) and moves the simulated clock on.

    On an ESP32, deep sleep ends in a reset; callers keep nothing in RAM across it.
    """

    def __init__(self, clock):
        self._clock = clock
        self.sleeps = []

    def lightsleep(self, duration_ms):
        _record(self.sleeps, ("light", duration_ms))
        self._clock.advance_ms(duration_ms)

    def deepsleep(self, duration_ms):
        _record(self.sleeps, ("deep", duration_ms))
        self._clock.advance_ms(duration_ms)


class SimAccel:
    """Latched motion flag, like an accelerometer's motion interrupt."""

    def __init__(self):
        self._moved = False

    def move(self):
        self._moved = True

    def motion(self):
        moved = self._moved
        self._moved = False
        return moved


class SimBattery:
    def __init__(self, battery_pct=80, battery_mv=3900, charging=False):
        self.set(battery_pct, battery_mv, charging)

    def set(self, battery_pct, battery_mv, charging=False):
        self.battery_pct = battery_pct
        self.battery_mv = battery_mv
        self.charging = charging

    def read(self):
        return self.battery_pct, self.battery_mv, self.charging


class SimNet:
    def __init__(self):
        self.up = True

    def is_up(self):
        return self.up


class SimHal:
    """Everything a firmware role needs, simulated. ``flash_dir`` is created if missing."""

    def __init__(self, flash_dir, start_time_s=1767225600, clock_synced=False, reset_cause=0):
        makedirs(flash_dir)
        self.flash_dir = flash_dir
        self.clock = SimClock(start_time_s, clock_synced)
        self.nfc = SimPn532()
        self.radio = SimRadio()
        self.button = SimButton()
        self.accel = SimAccel()
        self.battery = SimBattery()
        self.net = SimNet()
        self.tamper = SimTamper()
        self.outputs = SimOutputs(self.clock)
        self.power = SimPower(self.clock)
        self._reset_cause = reset_cause

    def reset_cause(self):
        return self._reset_cause
