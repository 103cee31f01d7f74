"""The MicroPython Unix port's REPL on a pseudo-terminal, standing in for a USB board.

mpremote speaks the raw REPL (Ctrl-A, code, Ctrl-D) over a serial port; the Unix
port implements the same raw REPL on its stdin/stdout. Two raw-mode ptys and a
relay thread join them: the interpreter's stdio is one pty's slave, mpremote opens
the other pty's slave as its "serial port" (``port``), and the relay copies bytes
between the two masters. Files mpremote writes land in ``root``, the interpreter's
working directory (its VfsPosix filesystem), as on a board's flash.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import tty
from pathlib import Path

RELAY_POLL_S = 0.05
READ_CHUNK_BYTES = 4096


class PtyBoard:
    """Start with ``start()``, copy to ``port``, then ``stop()``."""

    def __init__(self, micropython: Path, root: Path) -> None:
        self.micropython = micropython
        self.root = root
        self.port = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._relay: threading.Thread | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        board_master, board_slave = os.openpty()
        host_master, host_slave = os.openpty()
        tty.setraw(board_slave)  # no newline translation: mpremote expects the port's bytes
        tty.setraw(host_slave)
        self._proc = subprocess.Popen(
            [str(self.micropython)],
            stdin=board_slave,
            stdout=board_slave,
            stderr=board_slave,
            cwd=self.root,
            close_fds=True,
        )
        os.close(board_slave)
        self.port = os.ttyname(host_slave)
        self._fds = [board_master, host_master, host_slave]
        self._relay = threading.Thread(
            target=self._copy, args=(board_master, host_master), daemon=True
        )
        self._relay.start()

    def _copy(self, board: int, host: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([board, host], [], [], RELAY_POLL_S)
            for fd in ready:
                try:
                    data = os.read(fd, READ_CHUNK_BYTES)
                except OSError:
                    return
                os.write(host if fd == board else board, data)

    def stop(self) -> None:
        self._stop.set()
        if self._relay is not None:
            self._relay.join(5)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        for fd in self._fds:
            os.close(fd)
        self._fds = []
