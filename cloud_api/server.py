"""Serve the cloud app from a background thread (the demo and tests embed it)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 15.0


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1:`port` in a daemon thread."""

    def __init__(
        self, app: FastAPI, port: int, *, host: str = "127.0.0.1", **uvicorn_options: Any
    ) -> None:
        """``uvicorn_options`` go to uvicorn.Config (with ssl_certfile the URL is https)."""
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options)
        self.server = uvicorn.Server(config)
        scheme = "https" if "ssl_certfile" in uvicorn_options else "http"
        self.url = f"{scheme}://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="cloud-api", daemon=True)

    def start(self) -> None:
        """Start serving; returns once the socket listens, raises if it never does."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the cloud API did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
