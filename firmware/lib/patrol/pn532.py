"""NXP PN532 host-interface codec and I2C driver (UM0701-02, PN532 User Manual).

Frames (UM0701-02 section 6.2.1)::

    normal information frame  00 00 FF LEN LCS TFI PD0..PDn DCS 00
                              LEN counts TFI+PD; (LEN + LCS) & 0xFF == 0;
                              (TFI + sum(PD) + DCS) & 0xFF == 0
    extended information      00 00 FF FF FF LENM LENL LCS TFI PD... DCS 00
    ACK                       00 00 FF 00 FF 00
    NACK (host -> PN532 only) 00 00 FF FF 00 00   "resend your last response"
    error frame               00 00 FF 01 FF 7F 81 00   application-level (syntax) error

TFI is D4 host -> PN532 and D5 PN532 -> host; a response's PD0 is the command
code + 1. Over I2C every read starts with a status byte whose bit 0 is 1 when the
PN532 has a frame ready; the host polls it, reads the ACK, polls again and reads
the response.

The NTAG helpers read the NDEF message: NTAG 424 DNA through ISO 7816-4 APDUs
(SELECT the NDEF application D2760000850101, SELECT file E104, READ BINARY),
NTAG21x through READ (0x30) of 4-page blocks from page 4 (NFC Forum Type 2 TLVs).
"""

from patrol.compat import const, ticks_diff

ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"

TFI_HOST = const(0xD4)
TFI_PN532 = const(0xD5)
_TFI_ERROR = const(0x7F)

I2C_ADDRESS = const(0x24)  # 7-bit address (0x48 write / 0x49 read on the wire)
_STATUS_READY = const(0x01)

FRAME_INFO = const(0)
FRAME_ACK = const(1)
FRAME_NACK = const(2)
FRAME_ERROR = const(3)

CMD_GET_FIRMWARE_VERSION = const(0x02)
CMD_SAM_CONFIGURATION = const(0x14)
CMD_RF_CONFIGURATION = const(0x32)
CMD_IN_DATA_EXCHANGE = const(0x40)
CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
CMD_IN_RELEASE = const(0x52)

BRTY_106_TYPE_A = const(0x00)
_RF_CFG_MAX_RETRIES = const(0x05)
_SAM_NORMAL_MODE = const(0x01)
_STATUS_ERROR_MASK = const(0x3F)  # InDataExchange status: bits 0..5 are the error code
STATUS_TIMEOUT = const(0x01)  # target did not answer (removed from the field)

_MAX_NORMAL_LEN = const(255)  # LEN byte; TFI included
_MAX_FRAME_DATA = const(265)  # firmware limit: 264 bytes of PD + TFI
_FRAME_OVERHEAD = const(8)  # preamble, start code x2, LEN, LCS, DCS, postamble + slack byte

# NTAG 424 DNA / Type 4 (ISO 7816-4)
_NDEF_AID = b"\xd2\x76\x00\x00\x85\x01\x01"
_NDEF_FILE_ID = b"\xe1\x04"
_SW_OK = b"\x90\x00"
_APDU_CHUNK_BYTES = const(48)  # READ BINARY Le: small, keeps each response frame short
# NTAG21x / Type 2
_T2_READ = const(0x30)
_T2_FIRST_DATA_PAGE = const(4)
_T2_TLV_NULL = const(0x00)
_T2_TLV_NDEF = const(0x03)
_T2_TLV_TERMINATOR = const(0xFE)
MAX_NDEF_BYTES = const(256)  # a SUN URL message is ~100 bytes; refuse anything bigger
_LIST_ONE_TYPE_A = b"\x01\x00"  # InListPassiveTarget params: MaxTg 1, BrTy 106 kbps type A


class Pn532Error(Exception):
    """Root of every reader-side failure."""


class Pn532Timeout(Pn532Error):
    """The PN532 did not become ready (no ACK or no response) in time."""


class Pn532FrameError(Pn532Error):
    """A frame failed its LCS/DCS checksum or structure, even after NACK retries."""


class Pn532CommandError(Pn532Error):
    """The PN532 answered with an error frame or an unexpected response code."""


class TagError(Pn532Error):
    """The tag did not answer as expected (removed mid-read, bad status word, no NDEF)."""


# --- codec ---------------------------------------------------------------------------


def _checksum(data):
    total = 0
    for b in data:
        total += b
    return (-total) & 0xFF


def encode_frame(tfi, payload):
    """Information frame carrying TFI + ``payload`` (normal, or extended beyond 254 bytes)."""
    length = 1 + len(payload)
    if length > _MAX_FRAME_DATA:
        raise Pn532FrameError("frame too long")
    body = bytes((tfi,)) + bytes(payload)
    if length < _MAX_NORMAL_LEN:
        head = bytes((0x00, 0x00, 0xFF, length, (-length) & 0xFF))
    else:
        high, low = length >> 8, length & 0xFF
        head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, high, low, (-(high + low)) & 0xFF))
    return head + body + bytes((_checksum(body), 0x00))


def encode_command(command, params=b""):
    """Host -> PN532 frame for ``command`` with ``params``."""
    return encode_frame(TFI_HOST, bytes((command,)) + bytes(params))


def decode_frame(buf):
    """Parse one frame from ``buf`` (I2C status byte already stripped).

    Returns ``(FRAME_INFO, tfi, payload)``, ``(FRAME_ACK, None, b"")``,
    ``(FRAME_NACK, None, b"")`` or ``(FRAME_ERROR, 0x7F, b"")``. Any number of
    preamble zeros is accepted; trailing bytes after the postamble are ignored
    (an I2C read is usually longer than the frame).
    """
    size = len(buf)
    i = 0
    while i + 1 < size and not (buf[i] == 0x00 and buf[i + 1] == 0xFF):
        if buf[i] != 0x00:
            raise Pn532FrameError("garbage before start code")
        i += 1
    if i + 3 >= size:
        raise Pn532FrameError("no start code")
    length, lcs = buf[i + 2], buf[i + 3]
    if length == 0x00 and lcs == 0xFF:
        return FRAME_ACK, None, b""
    if length == 0xFF and lcs == 0x00:
        return FRAME_NACK, None, b""
    start = i + 4
    if length == 0xFF and lcs == 0xFF:
        if i + 6 >= size:
            raise Pn532FrameError("short extended header")
        high, low, lcs = buf[i + 4], buf[i + 5], buf[i + 6]
        if (high + low + lcs) & 0xFF:
            raise Pn532FrameError("bad LCS")
        length = (high << 8) | low
        start = i + 7
    elif (length + lcs) & 0xFF:
        raise Pn532FrameError("bad LCS")
    if length == 0 or start + length + 1 > size:
        raise Pn532FrameError("frame shorter than LEN")
    total = 0  # TFI + PD + DCS sum to 0 mod 256; summed in place, no copy of the data
    for k in range(start, start + length + 1):
        total += buf[k]
    if total & 0xFF:
        raise Pn532FrameError("bad DCS")
    tfi = buf[start]
    if length == 1 and tfi == _TFI_ERROR:
        return FRAME_ERROR, _TFI_ERROR, b""
    return FRAME_INFO, tfi, bytes(buf[start + 1 : start + length])


# --- driver --------------------------------------------------------------------------


class Target:
    """One ISO 14443-A target from InListPassiveTarget (UM0701-02 section 7.3.5)."""

    __slots__ = ("tg", "sens_res", "sel_res", "uid", "ats")

    def __init__(self, tg, sens_res, sel_res, uid, ats):
        self.tg = tg
        self.sens_res = sens_res
        self.sel_res = sel_res
        self.uid = uid
        self.ats = ats

    def is_iso_dep(self):
        """True for ISO/IEC 14443-4 targets (SAK bit 6), e.g. NTAG 424 DNA; False for NTAG21x."""
        return bool(self.sel_res & 0x20)


class Pn532:
    """Blocking-with-timeout PN532 driver over an I2C object.

    ``i2c`` needs ``writeto(addr, buf)`` and ``readfrom(addr, nbytes)`` (machine.I2C
    or the simulated bus); ``clock`` needs ``ticks_ms()`` and ``sleep_ms(ms)`` so
    tests advance simulated time instead of sleeping.
    """

    def __init__(
        self,
        i2c,
        clock,
        address=I2C_ADDRESS,
        ack_timeout_ms=30,
        response_timeout_ms=500,
        poll_interval_ms=2,
        max_nack_retries=2,
    ):
        self._i2c = i2c
        self._clock = clock
        self._address = address
        self._ack_timeout_ms = ack_timeout_ms
        self._response_timeout_ms = response_timeout_ms
        self._poll_interval_ms = poll_interval_ms
        self._max_nack_retries = max_nack_retries
        self.nacks_sent = 0
        self._list_frame = None  # the InListPassiveTarget frame, built on first use

    # low level

    def _wait_ready(self, timeout_ms):
        start = self._clock.ticks_ms()
        while True:
            try:
                status = self._i2c.readfrom(self._address, 1)
            except OSError as exc:
                raise Pn532Error("i2c read failed: %s" % exc)
            if status and status[0] & _STATUS_READY:
                return
            if self._ticks_since(start) >= timeout_ms:
                raise Pn532Timeout("PN532 not ready")
            self._clock.sleep_ms(self._poll_interval_ms)

    def _ticks_since(self, start):
        return ticks_diff(self._clock.ticks_ms(), start)

    def _read(self, nbytes):
        try:
            data = self._i2c.readfrom(self._address, nbytes + 1)
        except OSError as exc:
            raise Pn532Error("i2c read failed: %s" % exc)
        if not data[0] & _STATUS_READY:
            raise Pn532Timeout("status byte not ready")
        return memoryview(data)[1:]  # the frame after the status byte, not a copy of it

    def _write(self, frame):
        try:
            self._i2c.writeto(self._address, frame)
        except OSError as exc:
            raise Pn532Error("i2c write failed: %s" % exc)

    def _command_frame(self, command, params):
        # The wearable polls InListPassiveTarget every step: build that frame once.
        if command == CMD_IN_LIST_PASSIVE_TARGET and params is _LIST_ONE_TYPE_A:
            if self._list_frame is None:
                self._list_frame = encode_command(command, params)
            return self._list_frame
        return encode_command(command, params)

    def call(self, command, params=b"", response_bytes=16, timeout_ms=None):
        """Send ``command``; return the response's data after its response code.

        Waits for the ACK, then the response; a response with a bad checksum is
        NACKed (the PN532 resends it) up to ``max_nack_retries`` times. On a
        timeout the host sends an ACK, which aborts the command in the PN532.
        """
        self._write(self._command_frame(command, params))
        try:
            self._wait_ready(self._ack_timeout_ms)
        except Pn532Timeout:
            raise Pn532Timeout("no ACK")
        kind, _, _ = decode_frame(self._read(len(ACK_FRAME)))
        if kind != FRAME_ACK:
            raise Pn532FrameError("expected ACK")
        attempts = 0
        while True:
            try:
                self._wait_ready(self._response_timeout_ms if timeout_ms is None else timeout_ms)
            except Pn532Timeout:
                self._write(ACK_FRAME)  # abort the pending command
                raise
            try:
                kind, tfi, payload = decode_frame(self._read(response_bytes + _FRAME_OVERHEAD))
                break
            except Pn532FrameError:
                if attempts >= self._max_nack_retries:
                    raise
                attempts += 1
                self.nacks_sent += 1
                self._write(NACK_FRAME)
        if kind == FRAME_ERROR:
            raise Pn532CommandError("PN532 error frame (syntax error)")
        if kind != FRAME_INFO or tfi != TFI_PN532 or not payload or payload[0] != command + 1:
            raise Pn532CommandError("unexpected response")
        return payload[1:]

    # commands

    def get_firmware_version(self):
        """GetFirmwareVersion (0x02) -> (ic, ver, rev, support); a PN532 v1.6 says (0x32, 1, 6, 7)."""
        data = self.call(CMD_GET_FIRMWARE_VERSION, b"", 6)
        if len(data) != 4:
            raise Pn532CommandError("bad firmware version length")
        return data[0], data[1], data[2], data[3]

    def sam_configuration(self, mode=_SAM_NORMAL_MODE):
        """SAMConfiguration (0x14), normal mode: no SAM, the PN532 talks to the antenna."""
        self.call(CMD_SAM_CONFIGURATION, bytes((mode,)), 2)

    def set_passive_activation_retries(self, retries):
        """RFConfiguration (0x32) item 5: cap InListPassiveTarget retries (0xFF waits forever)."""
        self.call(CMD_RF_CONFIGURATION, bytes((_RF_CFG_MAX_RETRIES, 0xFF, 0x01, retries)), 2)

    def in_list_passive_target(self, timeout_ms=None):
        """InListPassiveTarget (0x4A), one target, 106 kbps type A -> Target or None."""
        data = self.call(CMD_IN_LIST_PASSIVE_TARGET, _LIST_ONE_TYPE_A, 40, timeout_ms)
        if not data or data[0] == 0:
            return None
        # NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1, [ATS]
        if len(data) < 6 or len(data) < 6 + data[5]:
            raise Pn532CommandError("short target data")
        uid_len = data[5]
        uid = bytes(data[6 : 6 + uid_len])
        ats = bytes(data[6 + uid_len :])
        return Target(data[1], (data[2] << 8) | data[3], data[4], uid, ats)

    def in_data_exchange(self, tg, data, response_bytes=64):
        """InDataExchange (0x40): send ``data`` to target ``tg``; returns the target's answer."""
        out = self.call(CMD_IN_DATA_EXCHANGE, bytes((tg,)) + bytes(data), response_bytes + 1)
        if not out:
            raise Pn532CommandError("empty exchange response")
        status = out[0] & _STATUS_ERROR_MASK
        if status == STATUS_TIMEOUT:
            raise TagError("target did not answer (removed?)")
        if status:
            raise TagError("exchange error status 0x%02x" % status)
        return bytes(out[1:])

    def in_release(self, tg=0):
        """InRelease (0x52): release target ``tg`` (0 = all)."""
        self.call(CMD_IN_RELEASE, bytes((tg,)), 2)

    def begin(self, passive_retries=1):
        """Check the chip, enter normal mode, and make InListPassiveTarget return promptly."""
        version = self.get_firmware_version()
        self.sam_configuration()
        self.set_passive_activation_retries(passive_retries)
        return version


# --- NDEF readers --------------------------------------------------------------------


def _apdu(reader, tg, apdu, response_bytes):
    answer = reader.in_data_exchange(tg, apdu, response_bytes + 2)
    if len(answer) < 2 or answer[-2:] != _SW_OK:
        raise TagError("status word %s" % bytes(answer[-2:]).hex())
    return answer[:-2]


def read_ntag424_ndef(reader, tg):
    """NDEF message of an NTAG 424 DNA (NFC Forum Type 4): SELECT app, SELECT E104, READ BINARY."""
    _apdu(reader, tg, b"\x00\xa4\x04\x0c\x07" + _NDEF_AID + b"\x00", 0)
    _apdu(reader, tg, b"\x00\xa4\x00\x0c\x02" + _NDEF_FILE_ID + b"\x00", 0)
    nlen_bytes = _apdu(reader, tg, b"\x00\xb0\x00\x00\x02", 2)
    if len(nlen_bytes) != 2:
        raise TagError("short NLEN")
    nlen = (nlen_bytes[0] << 8) | nlen_bytes[1]
    if nlen == 0 or nlen > MAX_NDEF_BYTES:
        raise TagError("NDEF length %d out of range" % nlen)
    message = bytearray()
    while len(message) < nlen:
        offset = 2 + len(message)
        chunk = min(_APDU_CHUNK_BYTES, nlen - len(message))
        part = _apdu(reader, tg, bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, chunk)), chunk)
        if not part:
            raise TagError("empty READ BINARY")
        message += part
    return bytes(message[:nlen])


def read_ntag21x_ndef(reader, tg):
    """NDEF message of an NTAG21x (NFC Forum Type 2): READ 4 pages at a time from page 4."""
    data = bytearray()
    page = _T2_FIRST_DATA_PAGE
    offset = 0
    ndef_start = None
    ndef_len = 0
    while True:
        while ndef_start is None and offset < len(data):
            tlv = data[offset]
            if tlv == _T2_TLV_NULL:
                offset += 1
                continue
            if tlv == _T2_TLV_TERMINATOR:
                raise TagError("no NDEF TLV")
            if offset + 1 >= len(data):
                break
            length = data[offset + 1]
            header = 2
            if length == 0xFF:
                if offset + 3 >= len(data):
                    break
                length = (data[offset + 2] << 8) | data[offset + 3]
                header = 4
            if tlv == _T2_TLV_NDEF:
                if length == 0 or length > MAX_NDEF_BYTES:
                    raise TagError("NDEF length %d out of range" % length)
                ndef_start = offset + header
                ndef_len = length
                break
            offset += header + length
        if ndef_start is not None and len(data) >= ndef_start + ndef_len:
            return bytes(data[ndef_start : ndef_start + ndef_len])
        if len(data) > MAX_NDEF_BYTES + 16:
            raise TagError("no NDEF TLV within limit")
        block = reader.in_data_exchange(tg, bytes((_T2_READ, page)), 16)
        if len(block) != 16:
            raise TagError("short READ")
        data += block
        page += 4
