"""One agent per queue file: an exclusive ``flock`` on ``<queue file>.lock``.

The running agent holds it for its lifetime (the kernel releases it when the
process dies, even by SIGKILL, so a crash never leaves a stale lock). Commands
that write the queue behind the agent's back (``patrol-edge dead-letter retry``)
take it too, so they refuse to run beside a live agent instead of racing its
in-memory state.
"""

import fcntl
import os
from pathlib import Path


class QueueLockedError(Exception):
    """Another process holds the queue file's lock (an agent is running on it)."""


def lock_path(queue_path: Path) -> Path:
    """The lock file beside the queue file."""
    return queue_path.with_name(queue_path.name + ".lock")


class QueueLock:
    """Holds the lock from :meth:`acquire` to :meth:`release` (also a context manager)."""

    def __init__(self, queue_path: Path) -> None:
        """Nothing is locked until :meth:`acquire`."""
        self.path = lock_path(queue_path)
        self._fd: int | None = None

    def acquire(self) -> "QueueLock":
        """Take the lock now or raise :class:`QueueLockedError` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise QueueLockedError(
                f"{self.path} is held by pid {holder}: a patrol-edge agent runs on this queue"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "QueueLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
