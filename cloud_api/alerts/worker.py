"""The alert worker: escalation and webhook deliveries, one thread per API process.

Safe with any number of processes: escalation locks due alerts ``FOR UPDATE SKIP
LOCKED`` and deliveries are leased (:mod:`.webhooks`), so no step is escalated or
sent twice at once; SQLite has a single writer. Webhooks are sent concurrently
(a small thread pool), so a target that hangs until its timeout never delays
another target's delivery.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.alerts import service, webhooks
from cloud_api.alerts.settings import AlertSettings
from cloud_api.crypto_store import SecretBox

log = logging.getLogger(__name__)

SEND_THREADS = 8


class AlertWorker:
    """Runs :meth:`run_once` every ``worker_poll_s`` in a daemon thread until stopped."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        box: SecretBox,
        settings: AlertSettings,
        influx: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.settings = settings
        self.influx = influx
        self.clock = clock
        self.owner = f"alerts-{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self._pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="alerts-webhook")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alerts-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.webhook_timeout_s + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the emergency path
                log.exception("alert worker pass failed; retrying")
            self._stop.wait(self.settings.worker_poll_s)

    def run_once(self) -> tuple[int, int]:
        """One pass: escalate what is due, send due webhooks; (escalated, attempts)."""
        chain = self.settings.chain()
        with self.sessions() as session, session.begin():
            escalated = service.escalate_due(
                session, now=self.clock(), chain=chain, influx=self.influx
            )
        with self.sessions() as session, session.begin():
            claimed = webhooks.claim(
                session,
                box=self.box,
                owner=self.owner,
                now=self.clock(),
                lease_s=self.settings.webhook_lease_s,
                limit=SEND_THREADS * 4,
            )
        if not claimed:
            return len(escalated), 0
        outcomes = list(
            self._pool.map(lambda item: webhooks.send(self._client, item, now_s=time.time), claimed)
        )
        with self.sessions() as session, session.begin():
            for item, outcome in zip(claimed, outcomes, strict=True):
                if not outcome.delivered:
                    log.warning(
                        "webhook delivery %d attempt %d failed: %s",
                        item.id,
                        item.attempts + 1,
                        outcome.error,
                    )
                webhooks.record(
                    session,
                    item,
                    outcome,
                    owner=self.owner,
                    now=self.clock(),
                    initial_s=self.settings.webhook_retry_initial_s,
                    max_s=self.settings.webhook_retry_max_s,
                )
        return len(escalated), len(claimed)
