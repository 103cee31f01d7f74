"""Minimal MQTT 3.1.1 client over a plain socket, with non-blocking poll().

Why hand-written: umqtt.simple is not installable offline here, and it blocks in
wait_msg() and forgets a QoS 1 publish once written. The wearable needs a poll()
that never blocks its main loop, PUBACK tracking per packet id, retransmission
with DUP, a last will, and the same code under CPython for the demo.

Packets (MQTT 3.1.1 section 2/3; remaining length is a base-128 varint)::

    CONNECT    10 RL 00 04 'MQTT' 04 flags keepalive_s(u16) client_id [will_topic will_msg] [user] [password]
    CONNACK    20 02 session_present return_code
    PUBLISH    3X RL topic [packet_id] payload      X = DUP<<3 | QoS<<1 | RETAIN
    PUBACK     40 02 packet_id
    SUBSCRIBE  82 RL packet_id topic qos            SUBACK 90 RL packet_id codes
    PINGREQ    C0 00                                PINGRESP D0 00
    DISCONNECT E0 00
"""

import select
import socket
import struct

from patrol.compat import const, ticks_diff, ticks_ms

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_DUP = const(0x08)

_FLAG_USERNAME = const(0x80)
_FLAG_PASSWORD = const(0x40)
_FLAG_WILL_RETAIN = const(0x20)
_FLAG_WILL = const(0x04)
_FLAG_CLEAN_SESSION = const(0x02)

_EAGAIN = const(11)
_EWOULDBLOCK = const(11)
_EINPROGRESS = const(115)
_RECV_CHUNK_BYTES = const(256)
_MAX_RECV_PER_POLL = const(8)  # bounded work per poll(): the main loop stays responsive
_MAX_CACHED_TOPICS = const(4)  # encoded topic names kept for publish(); a device uses two


class MQTTError(Exception):
    """Root error: connection refused, lost, or a protocol violation."""


def _encode_length(length):
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack(">H", len(value)) + value


def _would_block(exc):
    code = exc.args[0] if exc.args else None
    return code in (_EAGAIN, _EWOULDBLOCK, _EINPROGRESS) or code is None


class MQTTClient:
    """One connection to a broker. Call ``connect()``, then ``poll()`` every loop."""

    def __init__(
        self,
        client_id,
        host,
        port=1883,
        user=None,
        password=None,
        keepalive_s=60,
        will_topic=None,
        will_payload=b"",
        will_retain=False,
        retry_ms=5000,
        max_inflight=8,
        max_packet_bytes=1024,
        ticks_ms_fn=ticks_ms,
    ):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.will_topic = will_topic
        self.will_payload = will_payload
        self.will_retain = will_retain
        self.retry_ms = retry_ms
        self.max_inflight = max_inflight
        self.max_packet_bytes = max_packet_bytes
        self._ticks_ms = ticks_ms_fn
        self._sock = None
        self._poller = None
        self._inbuf = bytearray()
        self._next_pid = 0
        self._inflight = {}  # pid -> [packet bytearray, sent_ticks]
        self._topics = {}  # topic -> its length-prefixed UTF-8 name (see publish)
        self._pending_subs = {}  # pid -> topic
        self._last_send = 0
        self._ping_sent = None
        self.connected = False
        self.retransmits = 0
        self.pubacks = 0
        self.pingresps = 0
        self.suback_codes = {}

    # --- connection ------------------------------------------------------------------

    def connect(self, clean_session=True, timeout_ms=3000):
        """Open the TCP connection, send CONNECT, wait for CONNACK (bounded by timeout_ms)."""
        self.close()
        info = socket.getaddrinfo(self.host, self.port)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_ms / 1000)
            sock.connect(info[-1])
            sock.send(self._connect_packet(clean_session))
            head = self._recv_exact(sock, 4)
        except OSError as exc:
            sock.close()
            raise MQTTError("connect failed: %r" % (exc,))
        if head[0] != _CONNACK or head[1] != 2:
            sock.close()
            raise MQTTError("expected CONNACK")
        if head[3] != 0:
            sock.close()
            raise MQTTError("connection refused, return code %d" % head[3])
        sock.setblocking(False)
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._inbuf = bytearray()
        self._last_send = self._ticks_ms()
        self._ping_sent = None
        self.connected = True
        return bool(head[2] & 1)

    @staticmethod
    def _recv_exact(sock, size):
        out = b""
        while len(out) < size:
            chunk = sock.recv(size - len(out))
            if not chunk:
                raise OSError("closed")
            out += chunk
        return out

    def _connect_packet(self, clean_session):
        flags = _FLAG_CLEAN_SESSION if clean_session else 0
        payload = _string(self.client_id)
        if self.will_topic:
            flags |= _FLAG_WILL | (1 << 3)  # will QoS 1
            if self.will_retain:
                flags |= _FLAG_WILL_RETAIN
            payload += _string(self.will_topic) + _string(self.will_payload)
        if self.user is not None:
            flags |= _FLAG_USERNAME
            payload += _string(self.user)
            if self.password is not None:
                flags |= _FLAG_PASSWORD
                payload += _string(self.password)
        variable = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack(">H", self.keepalive_s)
        body = variable + payload
        return bytes((_CONNECT,)) + _encode_length(len(body)) + body

    def disconnect(self):
        """Send DISCONNECT (the broker then drops the last will) and close."""
        if self._sock is not None:
            try:
                self._send(bytes((_DISCONNECT, 0)))
            except MQTTError:
                pass
        self.close()

    def close(self):
        """Drop the socket without DISCONNECT (the broker publishes the last will)."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._poller = None
        self.connected = False

    def _lost(self, why):
        self.close()
        raise MQTTError(why)

    # --- sending ---------------------------------------------------------------------

    def _send(self, data):
        if self._sock is None:
            raise MQTTError("not connected")
        view = memoryview(data)
        start = self._ticks_ms()
        while len(view):
            try:
                sent = self._sock.send(view)
            except OSError as exc:
                if not _would_block(exc):
                    self._lost("send failed: %r" % (exc,))
                sent = 0
            if sent:
                view = view[sent:]
            elif ticks_diff(self._ticks_ms(), start) > 2000:
                self._lost("send stalled")
        self._last_send = self._ticks_ms()

    def _pid(self):
        for _ in range(0xFFFF):
            self._next_pid = self._next_pid % 0xFFFF + 1
            if self._next_pid not in self._inflight and self._next_pid not in self._pending_subs:
                return self._next_pid
        raise MQTTError("no free packet id")

    def can_publish(self):
        """True while the QoS 1 window has room."""
        return self.connected and len(self._inflight) < self.max_inflight

    def inflight(self):
        """QoS 1 publishes not yet acknowledged by PUBACK."""
        return len(self._inflight)

    def publish(self, topic, payload, qos=1, retain=False, force=False):
        """Send PUBLISH; returns the packet id (0 for QoS 0).

        QoS 1 messages stay in the inflight table until PUBACK and are resent with
        DUP after ``retry_ms``. ``force`` ignores the window (used for SOS).
        """
        if not self.connected:
            raise MQTTError("not connected")
        if qos and not force and len(self._inflight) >= self.max_inflight:
            raise MQTTError("inflight window full")
        header = _PUBLISH | (qos << 1) | (1 if retain else 0)
        name = self._topics.get(topic)  # the wearable publishes on two topics, every event
        if name is None:
            name = _string(topic)
            if len(self._topics) < _MAX_CACHED_TOPICS:
                self._topics[topic] = name
        pid = self._pid() if qos else 0
        body_len = len(name) + (2 if qos else 0) + len(payload)
        length = _encode_length(body_len)
        # One buffer for the whole packet; it stays in the inflight table, where a
        # retransmission sets its DUP bit in place.
        packet = bytearray(1 + len(length) + body_len)
        packet[0] = header
        i = 1 + len(length)
        packet[1:i] = length
        packet[i : i + len(name)] = name
        i += len(name)
        if qos:
            struct.pack_into(">H", packet, i, pid)
            i += 2
        packet[i:] = payload
        if qos:
            self._inflight[pid] = [packet, self._ticks_ms()]
        self._send(packet)
        return pid

    def subscribe(self, topic, qos=1):
        """Send SUBSCRIBE; the SUBACK arrives through poll() (see ``suback_codes``)."""
        pid = self._pid()
        body = struct.pack(">H", pid) + _string(topic) + bytes((qos,))
        self._pending_subs[pid] = topic
        self._send(bytes((_SUBSCRIBE,)) + _encode_length(len(body)) + body)
        return pid

    def is_acked(self, pid):
        """True once ``pid`` got its PUBACK (or was never a QoS 1 publish)."""
        return pid not in self._inflight

    # --- receiving -------------------------------------------------------------------

    def poll(self, handler=None):
        """Do pending socket work without blocking; return received [(topic, payload)].

        Reads what is available, answers QoS 1 publishes with PUBACK, handles
        PUBACK/SUBACK/PINGRESP, resends unacknowledged publishes with DUP, and
        keeps the connection alive. Raises MQTTError when the connection is lost.
        With ``handler`` each message goes to ``handler(topic, payload)`` as soon
        as it is parsed (and [] is returned): a poll that drains a burst of acks
        then holds one message at a time instead of a list of all of them.
        """
        if self._sock is None or self._poller is None:
            raise MQTTError("not connected")
        messages = []
        for _ in range(_MAX_RECV_PER_POLL):
            if not self._readable():
                break
            try:
                chunk = self._sock.recv(_RECV_CHUNK_BYTES)
            except OSError as exc:
                if _would_block(exc):
                    break
                self._lost("recv failed: %r" % (exc,))
            if not chunk:
                self._lost("connection closed by broker")
            self._inbuf += chunk
            self._parse(messages, handler)
        self._timers()
        return messages

    def _readable(self):
        # MicroPython's ipoll() reuses the poll object instead of building a list of
        # tuples on every call (every main-loop step); CPython only has poll().
        poller = self._poller
        if poller is None:
            return False
        if hasattr(poller, "ipoll"):
            for _ in poller.ipoll(0):
                return True
            return False
        return bool(poller.poll(0))

    def _parse(self, messages, handler):
        # Walk the buffer with an index and cut the consumed bytes once at the end
        # (slicing the rest off after every packet copied it once per packet).
        buf = self._inbuf
        pos = 0
        while len(buf) - pos >= 2:
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < len(buf):
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    complete = True
                    break
                if i - pos > 4:
                    self._lost("bad remaining length")
            if not complete:
                break
            if length > self.max_packet_bytes:
                self._lost("packet too large")
            if len(buf) < i + length:
                break
            packet_type = buf[pos]
            body = bytes(buf[i : i + length])
            pos = i + length
            self._handle(packet_type, body, messages, handler)
        if pos:
            buf[:pos] = b""  # in place (MicroPython's bytearray has no slice deletion)

    def _handle(self, packet_type, body, messages, handler):
        kind = packet_type & 0xF0
        if kind == _PUBLISH:
            qos = (packet_type >> 1) & 3
            topic_len = (body[0] << 8) | body[1]
            topic = body[2 : 2 + topic_len].decode()
            offset = 2 + topic_len
            if qos == 1:
                pid = body[offset : offset + 2]
                offset += 2
                self._send(bytes((_PUBACK, 2)) + pid)
            elif qos:
                self._lost("QoS 2 not supported")
            if handler is None:
                messages.append((topic, body[offset:]))
            else:
                handler(topic, body[offset:])
        elif kind == _PUBACK:
            pid = (body[0] << 8) | body[1]
            if self._inflight.pop(pid, None) is not None:
                self.pubacks += 1
        elif kind == _SUBACK & 0xF0:
            pid = (body[0] << 8) | body[1]
            self._pending_subs.pop(pid, None)
            self.suback_codes[pid] = body[2] if len(body) > 2 else 0x80
        elif kind == _PINGRESP:
            self._ping_sent = None
            self.pingresps += 1
        else:
            self._lost("unexpected packet 0x%02x" % packet_type)

    def _timers(self):
        now = self._ticks_ms()
        for pid in self._inflight:
            entry = self._inflight[pid]
            if ticks_diff(now, entry[1]) >= self.retry_ms:
                packet = entry[0]
                packet[0] |= _DUP  # in place: the packet is this client's own bytearray
                entry[1] = now
                self.retransmits += 1
                self._send(packet)
        keepalive_ms = self.keepalive_s * 1000
        if self._ping_sent is not None:
            if ticks_diff(now, self._ping_sent) > keepalive_ms:
                self._lost("no PINGRESP within keepalive")
        elif keepalive_ms and ticks_diff(now, self._last_send) >= keepalive_ms // 2:
            self._send(bytes((_PINGREQ, 0)))
            self._ping_sent = now
