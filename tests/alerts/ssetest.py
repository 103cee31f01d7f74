"""A real Server-Sent Events client (httpx streaming, a reader thread) and servers."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadServer:
    """The app served by uvicorn on a free loopback port in a thread (real HTTP)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class SseClient:
    """Reads ``GET /api/v1/alerts/stream`` in a thread; events land in ``events``."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.status: int | None = None
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers or {},
            cookies=cookies or {},
            timeout=httpx.Timeout(60.0, read=120.0),
        )
        self._params = params or {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.connected.wait(30), "the stream did not open"

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/api/v1/alerts/stream", params=self._params) as r:
                self.status = r.status_code
                event_id = ""
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        self.events.put((event_id, json.loads(line[6:])))
        except httpx.HTTPError:
            pass
        finally:
            self.connected.set()
            self.closed.set()

    def next(self, timeout_s: float = 30.0) -> tuple[str, dict[str, Any]]:
        return self.events.get(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()
