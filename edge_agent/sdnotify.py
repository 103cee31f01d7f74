"""systemd's notify protocol (sd_notify(3)), without libsystemd.

The unit runs the agent as ``Type=notify`` with ``WatchdogSec=``: systemd passes
``$NOTIFY_SOCKET`` (a unix datagram socket; a leading ``@`` means the Linux
abstract namespace) and ``$WATCHDOG_USEC``. The agent sends ``READY=1`` once it
is subscribed on the broker, ``WATCHDOG=1`` at half the watchdog interval while
its health check says it can take events, ``STATUS=...`` lines a technician sees
in ``systemctl status``, and ``STOPPING=1`` on the way out. A hung agent stops
pinging and systemd kills and restarts it (``Restart=always``).

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op returning False.

The CLI removes ``$NOTIFY_SOCKET`` and the watchdog variables from its own
environment once read (``unset_environment``, like sd_notify(3)'s flag): child
processes such as ``timedatectl`` would otherwise inherit them and speak for the
agent (a failing ``timedatectl`` sends ``ERRNO=...`` to the socket).
"""

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

_log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"
US_PER_S: Final = 1_000_000
MAX_STATUS_CHARS: Final = 200
"""systemctl shows one line; longer text is cut rather than sent."""


def _address(path: str) -> str:
    if path.startswith("@"):
        return "\0" + path[1:]  # abstract namespace (no file)
    return path


class SystemdNotifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (read once, at construction)."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> None:
        """``environ`` defaults to ``os.environ`` (tests pass their own);
        ``unset_environment`` then removes the systemd variables from ``os.environ``."""
        env = os.environ if environ is None else environ
        self.socket_path = env.get(NOTIFY_SOCKET_ENV) or None
        self.watchdog_interval_s = watchdog_interval_s(env)
        if unset_environment:
            for name in (NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV):
                os.environ.pop(name, None)
        self._sock: socket.socket | None = None
        self._failed = False
        if self.socket_path is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether systemd gave us a socket."""
        return self._sock is not None

    def send(self, message: str) -> bool:
        """Send one datagram (``KEY=value`` lines); False when disabled or on error."""
        if self._sock is None or self.socket_path is None:
            return False
        try:
            self._sock.sendto(message.encode(), _address(self.socket_path))
        except OSError as exc:
            if not self._failed:
                self._failed = True
                _log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        if self._failed:
            self._failed = False
            _log.info("sd_notify to %s works again", self.socket_path)
        return True

    def ready(self, status: str) -> bool:
        """``READY=1``: systemd considers the unit started."""
        return self.send(f"READY=1\nSTATUS={status[:MAX_STATUS_CHARS]}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the agent is alive and well."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line for ``systemctl status``."""
        return self.send(f"STATUS={text[:MAX_STATUS_CHARS]}")

    def stopping(self) -> bool:
        """``STOPPING=1``: a clean shutdown began."""
        return self.send("STOPPING=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """systemd's watchdog interval for this process, or None (no watchdog, or not ours).

    ``$WATCHDOG_PID``, when set, must be this process (sd_watchdog_enabled(3)).
    """
    usec = environ.get(WATCHDOG_USEC_ENV)
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get(WATCHDOG_PID_ENV)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / US_PER_S
