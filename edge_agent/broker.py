"""The site broker: an embedded one for the demo, and Mosquitto's configuration for a site.

**Demo only** -- :class:`EmbeddedBroker` runs amqtt inside the agent process on a
loopback port, so the demo needs no system service and no root. It allows
anonymous clients and enforces no ACL and keeps sessions in memory only: any
local process could publish as any wearable, and a restart of the agent forgets
queued messages. That is acceptable on a laptop running simulated wearables and
nowhere else; a site runs Mosquitto configured by :func:`mosquitto_conf`, with a
password file and the ACL of docs/protocol.md.
"""

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

WEARABLE_QUEUE_EVENTS: Final = 5_000
"""A wearable's flash queue holds at least this many events (DESIGN "Numbers")."""

DEFAULT_MAX_INFLIGHT_MESSAGES: Final = 1_000
"""Unacknowledged QoS 1 messages the broker sends the agent at once; the agent
acknowledges a whole commit group together, so this must be >= the group size
(commit_max_messages) or every group waits for the window (Mosquitto's default: 20)."""

MAX_PACKET_BYTES: Final = 2_048
"""Largest MQTT packet a site needs: a 256-byte frame plus topic and header, with
room to spare; anything bigger is refused by the broker before it costs memory."""

_START_TIMEOUT_S: Final = 10.0


class BrokerError(Exception):
    """The embedded broker did not start or stop."""


class EmbeddedBroker:
    """amqtt 0.12 on ``host:port`` in its own asyncio thread (demo only, see module doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """``port=0`` picks a free port; read :attr:`port` after :meth:`start`."""
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        if self._port is None:
            raise BrokerError("broker not started")
        return self._port

    def start(self) -> None:
        """Start the broker thread and wait until it accepts connections."""
        self._thread = threading.Thread(target=self._run, name="edge-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise BrokerError(f"embedded broker did not start within {_START_TIMEOUT_S} s")
        if self._error is not None:
            raise BrokerError(f"embedded broker failed to start: {self._error!r}") from self._error

    def _run(self) -> None:
        from amqtt.broker import Broker  # heavy import, only when the demo wants it

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.host}:{self._requested_port}"}
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        try:
            self._broker = Broker(config, loop=loop)
            loop.run_until_complete(self._broker.start())
            server = self._broker._servers["default"].instance
            self._port = int(server.sockets[0].getsockname()[1])
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Shut the broker down and join its thread."""
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(_START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Certificate files of a TLS listener."""

    cafile: Path
    certfile: Path
    keyfile: Path


def max_queued_for(devices: int, events_per_device: int = WEARABLE_QUEUE_EVENTS) -> int:
    """Queued messages the agent's session must hold: every wearable's whole flash queue.

    While the agent is down the broker queues everything for its single persistent
    session; if the broker dropped some, the wearables would have to notice and
    resend. Sizing for every wearable's full queue means it never has to.
    """
    if devices < 1 or events_per_device < 1:
        raise ValueError("devices and events_per_device must be >= 1")
    return devices * events_per_device


def mosquitto_conf(
    *,
    port: int,
    password_file: Path,
    acl_file: Path,
    persistence_dir: Path,
    devices: int,
    max_inflight_messages: int = DEFAULT_MAX_INFLIGHT_MESSAGES,
    bind_address: str | None = None,
    tls: TlsFiles | None = None,
    tls_port: int = 8883,
    autosave_interval_s: int = 60,
) -> str:
    """Render the Mosquitto 2.x configuration of a site broker (pure; nothing is written).

    ``devices`` is the number of wearables on the site; ``max_queued_messages`` is
    sized from it with :func:`max_queued_for`.
    """
    if not 0 < port < 65536 or not 0 < tls_port < 65536:
        raise ValueError("ports must be 1..65535")
    if max_inflight_messages < 1:
        raise ValueError("max_inflight_messages must be >= 1")
    queued = max_queued_for(devices)
    bind = f" {bind_address}" if bind_address else ""
    lines = [
        "# Mosquitto configuration for a patrol site gateway (generated by edge_agent.broker).",
        "# Every wearable has its own user (its 8-hex device id) and may only write its own",
        "# up/status topics and read its own ack/cmd topics (acl_file, docs/protocol.md).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "",
        "# Persistence: the edge agent's session (clean_session=false) and its queued QoS 1",
        "# messages survive a broker restart. Mosquitto writes them at shutdown and every",
        "# autosave_interval seconds, not per message: on a power cut the last interval can",
        "# be lost, which is why wearables keep events until the agent's application ack.",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        f"autosave_interval {autosave_interval_s}",
        "# Never expire the agent's persistent session, however long it is away.",
        "# (persistent_client_expiration is left unset on purpose.)",
        "",
        f"# Queue per client while it is offline or busy: {devices} wearables x "
        f"{WEARABLE_QUEUE_EVENTS} events each.",
        "# Mosquitto's default (1000) would silently drop the oldest events of a longer outage.",
        f"max_queued_messages {queued}",
        "# No byte cap on the queue: the message count above is the bound (frames <= 256 B).",
        "max_queued_bytes 0",
        "# Unacknowledged messages in flight to one client (default 20): the agent acks a whole",
        "# commit group at once, so this must cover its group size (commit_max_messages).",
        f"max_inflight_messages {max_inflight_messages}",
        "# QoS 0 is not used by wearables; never queue it for offline clients.",
        "queue_qos0_messages false",
        "# Refuse anything larger than a frame plus its topic before it costs memory.",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "# Low latency for SOS and acks: send small packets at once (no Nagle delay).",
        "set_tcp_nodelay true",
        "",
        "# Wearables on the site Wi-Fi.",
        f"listener {port}{bind}",
        "protocol mqtt",
    ]
    if tls is not None:
        lines += [
            "",
            "# TLS listener for wearables that support it.",
            f"listener {tls_port}{bind}",
            "protocol mqtt",
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"
