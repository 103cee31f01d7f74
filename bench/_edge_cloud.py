"""Helper of bench/edge_ingest.py: the real cloud app served by uvicorn in its own process.

Runs in a spawned process so the cloud's verification does not share a GIL with
the forwarder being measured (a deployment runs them on different machines).
"""

from __future__ import annotations

import base64
import multiprocessing
import socket
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from pydantic import SecretStr

SERVER_KEY = bytes(range(100, 132))
GATEWAY_ID = "gw-bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(directory: str, device_ids: list[int], device_key: bytes, out: Queue[Any]) -> None:
    import uvicorn

    from cloud_api.app import create_app
    from cloud_api.crypto_store import SecretBox
    from cloud_api.db import make_engine, session_scope
    from cloud_api.provisioning import create_gateway, create_site, register_wearable
    from cloud_api.settings import Settings

    db_url = f"sqlite:///{directory}/cloud.db"
    settings = Settings(
        database_url=db_url, server_key=SecretStr(base64.b64encode(SERVER_KEY).decode())
    )
    app = create_app(settings)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        site = create_site(session, name="Bench site")
        _gateway, api_key = create_gateway(session, gateway_id=GATEWAY_ID, site=site)
        for device_id in device_ids:
            register_wearable(
                session, box=SecretBox(SERVER_KEY), device_id=device_id, key=device_key, site=site
            )
    engine.dispose()
    port = _free_port()
    out.put((f"http://127.0.0.1:{port}", api_key))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_cloud_process(
    directory: Path, device_ids: list[int], device_key: bytes
) -> tuple[multiprocessing.process.BaseProcess, str, str]:
    """Start the cloud; returns (process, base URL, gateway API key) once provisioned."""
    ctx = multiprocessing.get_context("spawn")
    out: Queue[Any] = ctx.Queue()
    proc = ctx.Process(
        target=_serve, args=(str(directory), device_ids, device_key, out), daemon=True
    )
    proc.start()
    url, api_key = out.get(timeout=60)
    return proc, str(url), str(api_key)
