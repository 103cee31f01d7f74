"""The real cloud app (cloud_api) served by uvicorn in a thread, on a SQLite file.

Provisioned through cloud_api's public provisioning functions with one site, the
gateway "gw-test" and the wearables 0000a001..0000a003 (key edgetest.DEVICE_KEY).
"""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetest import DEVICE_KEY
from sqlalchemy import Engine, text

from cloud_api.app import create_app
from cloud_api.crypto_store import SecretBox
from cloud_api.db import make_engine, session_scope
from cloud_api.provisioning import create_gateway, create_site, register_wearable
from cloud_api.server import ServerThread
from cloud_api.settings import Settings

SERVER_KEY = bytes(range(100, 132))
GATEWAY_ID = "gw-test"
WEARABLES = (0x0000A001, 0x0000A002, 0x0000A003)


@dataclass
class CloudServer:
    url: str
    api_key: str
    engine: Engine
    server: ServerThread

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cloud(
    tmp_path: Path,
    *,
    clock: Any = None,
    uvicorn_options: dict[str, Any] | None = None,
    **settings_overrides: Any,
) -> CloudServer:
    """``settings_overrides`` go to cloud_api's Settings (e.g. max_batch_bytes);
    ``uvicorn_options`` to uvicorn.Config (e.g. ssl_certfile / ssl_keyfile: URL is https)."""
    db_url = f"sqlite:///{tmp_path}/cloud.db"
    settings = Settings(
        database_url=db_url,
        server_key=base64.b64encode(SERVER_KEY).decode("ascii"),
        **settings_overrides,
    )
    kwargs = {} if clock is None else {"clock": clock}
    app = create_app(settings, **kwargs)
    engine = make_engine(db_url)
    box = SecretBox(SERVER_KEY)
    with session_scope(engine) as session:
        site = create_site(session, name="Harbour depot")
        _gateway, api_key = create_gateway(session, gateway_id=GATEWAY_ID, site=site)
        for device_id in WEARABLES:
            register_wearable(session, box=box, device_id=device_id, key=DEVICE_KEY, site=site)
    server = ServerThread(app, _free_port(), lifespan="on", **(uvicorn_options or {}))
    server.start()
    return CloudServer(server.url, api_key, engine, server)
