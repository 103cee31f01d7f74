"""Small network helpers for scripts/test: free loopback ports and readiness waits.

Standard library only, because it runs before (and independently of) the project's
own packages. Each command exits 0 on success and non-zero with a one-line reason on
stderr, so the shell script can print the service's log tail and stop.

    probe.py free-ports N                 N distinct free TCP ports on 127.0.0.1
    probe.py wait-tcp PORT PID TIMEOUT_S  until 127.0.0.1:PORT accepts a connection
    probe.py wait-http URL PID TIMEOUT_S  until URL answers with a 2xx status
    probe.py post-form URL KEY=VALUE...   POST a form once; non-2xx is an error

PID is the service's process id: the service counts as ready only once that
process itself listens on the port (not some other process that took the port
meanwhile), and a wait stops at once when the process has died instead of sitting
out the whole timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

# Poll often: services here start in tens to hundreds of milliseconds.
POLL_INTERVAL_S = 0.05
# One probe attempt must not hang on a half-started listener.
ATTEMPT_TIMEOUT_S = 1.0


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports the kernel considers free on 127.0.0.1.

    All sockets stay open until every port is chosen, so the ports are distinct;
    another process could still grab one before the service binds it, which the
    readiness wait then reports as a failed start.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has already exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # Field 3 is the state; the command name in field 2 may contain spaces.
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def listens_on(pid: int, port: int) -> bool:
    """True when process `pid` itself holds the listening socket on 127.0.0.1:`port`.

    A free port can be taken by someone else between choosing it and the
    service binding it (several test runs may start at once). Then a plain
    connect would reach the other process and report our service ready while
    it failed to bind, so readiness also requires that the socket is ours.
    """
    wanted = f"0100007F:{port:04X}"  # /proc/net/tcp: little-endian IPv4, hex port
    inodes: set[str] = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    if not inodes:
        return False
    sockets = {f"socket:[{inode}]" for inode in inodes}
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{name}") in sockets:
                return True
    return False


def tcp_ready(port: int) -> bool:
    """True when 127.0.0.1:`port` accepts a TCP connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=ATTEMPT_TIMEOUT_S):
            return True
    except OSError:
        return False


def http_ready(url: str) -> bool:
    """True when `url` answers with a 2xx status."""
    if not url.startswith("http://"):
        raise ValueError(f"only plain http:// URLs are probed, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=ATTEMPT_TIMEOUT_S) as response:  # noqa: S310 (scheme checked above)
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_until(what: str, check: Callable[[], bool], pid: int, timeout_s: float) -> int:
    """Poll `check()` until it is true, the process dies, or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return 0
        if not process_alive(pid):
            print(f"{what}: process {pid} exited before it was ready", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            print(f"{what}: not ready after {timeout_s:g} s", file=sys.stderr)
            return 1
        time.sleep(POLL_INTERVAL_S)


def post_form(url: str, fields: list[str]) -> int:
    """POST `fields` (KEY=VALUE strings) as a form to `url`; print the body on failure."""
    if not url.startswith("http://"):
        raise ValueError(f"only plain http:// URLs are used, got {url!r}")
    pairs = [field.split("=", 1) for field in fields]
    data = urllib.parse.urlencode([(key, value) for key, value in pairs]).encode()
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:  # noqa: S310 (scheme checked above)
            response.read()
            return 0
    except urllib.error.HTTPError as error:
        print(f"POST {url}: HTTP {error.code}: {error.read()[:500]!r}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        print(f"POST {url}: {error}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Dispatch the sub-commands described in the module docstring."""
    if len(argv) == 2 and argv[0] == "free-ports":
        print(" ".join(str(port) for port in free_ports(int(argv[1]))))
        return 0
    if len(argv) == 4 and argv[0] == "wait-tcp":
        port, pid, timeout_s = int(argv[1]), int(argv[2]), float(argv[3])
        return wait_until(
            f"tcp 127.0.0.1:{port}",
            lambda: listens_on(pid, port) and tcp_ready(port),
            pid,
            timeout_s,
        )
    if len(argv) == 4 and argv[0] == "wait-http":
        url, pid, timeout_s = argv[1], int(argv[2]), float(argv[3])
        url_port = urllib.parse.urlsplit(url).port
        if url_port is None:
            raise ValueError(f"the URL needs an explicit port: {url!r}")
        return wait_until(
            url, lambda: listens_on(pid, url_port) and http_ready(url), pid, timeout_s
        )
    if len(argv) >= 2 and argv[0] == "post-form":
        return post_form(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
