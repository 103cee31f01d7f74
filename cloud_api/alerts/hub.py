"""Fan-out of alert steps to this process's SSE subscribers.

One hub per database (keyed by its URL without password). Sources:

- PostgreSQL: a listener thread holds one connection ``LISTEN patrol_alerts``
  (psycopg 3, autocommit) and publishes every notification, whichever API
  process committed the step (its own included). Started with the first
  subscriber; it reconnects after a lost connection (steps committed while it
  was away are replayed by the client's ``Last-Event-ID``).
- SQLite (one process): :mod:`.service` publishes after commit.

Subscribers are asyncio queues; ``publish`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

CHANNEL: Final = "patrol_alerts"
QUEUE_MAX: Final = 1000
"""A subscriber that falls this far behind is dropped (its client reconnects and replays)."""


def hub_key(url: URL) -> str:
    """The registry key of a database (password hidden, so it can be logged)."""
    return url.render_as_string(hide_password=True)


@dataclass(eq=False)
class Subscriber:
    """One SSE connection: a queue on its event loop; ``dropped`` when it fell behind."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: bool = False

    def _put(self, payload: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped = True


class AlertHub:
    """Subscribers of one database in this process."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()
        """Set while the PostgreSQL listener holds its LISTEN (tests wait for it)."""

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        sub = Subscriber(loop)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def publish(self, payload: dict[str, Any]) -> None:
        """Hand ``payload`` to every subscriber (thread-safe; never blocks)."""
        with self._lock:
            subs = list(self._subscribers)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._put, payload)
            except RuntimeError:  # its loop is closed: the connection is gone
                self.unsubscribe(sub)

    def ensure_listener(self, conninfo: str | None) -> None:
        """Start the PostgreSQL LISTEN thread once (``conninfo`` None: SQLite, nothing)."""
        if conninfo is None:
            return
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._stop.clear()
            self._listener = threading.Thread(
                target=self._listen, args=(conninfo,), name="alerts-listen", daemon=True
            )
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()

    def _listen(self, conninfo: str) -> None:
        backoff_s = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff_s = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            try:
                                payload = json.loads(note.payload)
                            except ValueError:
                                log.error("alert notification is not JSON; ignored")
                                continue
                            self.publish(payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("alert LISTEN connection lost (%s); retrying", type(exc).__name__)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)
        self.listening.clear()


_hubs: dict[str, AlertHub] = {}
_hubs_lock = threading.Lock()


def hub_for(key: str) -> AlertHub:
    """The process-wide hub of a database (made on first use)."""
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = AlertHub(key)
        return hub


def conninfo_of(url: URL) -> str | None:
    """A libpq connection string for a PostgreSQL URL (``options`` kept), else None."""
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
