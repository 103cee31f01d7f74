"""`patrol bulk register`: a CSV uploaded in chunks to a real server, secrets to a 0600 file."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from cloudtest import ADMIN_TOKEN, World, frame_item, make_frame

from cloud_api.app import create_app
from cloud_api.server import ServerThread
from patrol_protocol.frames import Sos

CLI_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_bulk_register_uploads_in_chunks(world: World, tmp_path: Path) -> None:
    site = int(world.scalar("SELECT id FROM sites WHERE name = 'Harbour depot'"))
    rows = [f"wearable,{0xF100 + i:08x},W-{i}," for i in range(7)]
    rows.insert(3, "wearable,BAD,,")  # line 5 of the file
    (tmp_path / "devices.csv").write_text(
        "kind,id,label,checkpoint_id\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    out = tmp_path / "secrets.jsonl"
    server = ServerThread(create_app(world.settings), _free_port())
    server.start()
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "patrol_cli",
                "bulk",
                "register",
                str(tmp_path / "devices.csv"),
                "--site-id",
                str(site),
                "--out",
                str(out),
                "--url",
                server.url,
                "--chunk",
                "3",
            ],
            env={**os.environ, "PATROL_API_TOKEN": ADMIN_TOKEN, "COLUMNS": "120"},
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
    finally:
        server.stop()
    assert run.returncode == 1, run.stderr  # one row failed
    assert "created 7, errors 1" in run.stderr
    assert "8/8" in run.stderr  # the progress bar reached every row
    assert "5 " in run.stderr and "id must be 8 lowercase hex digits" in run.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [f"{0xF100 + i:08x}" for i in range(7)]
    for record in records:
        assert record["key_b64"] not in run.stdout + run.stderr
        assert record["mqtt_password"] not in run.stdout + run.stderr
    # The secrets in the file are the ones the cloud verifies with.
    first = records[0]
    raw = make_frame(
        Sos(trigger=1), seq=1, device_id=0xF100, key=base64.b64decode(first["key_b64"])
    )
    [result] = world.results(frame_item(1, raw, topic="patrol/v1/dev/0000f100/up"))
    assert result["status"] == "accepted"


def test_bulk_register_without_a_token_says_so(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("kind,id\nwearable,0000f001\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PATROL_API_TOKEN"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "patrol_cli",
            "bulk",
            "register",
            str(tmp_path / "d.csv"),
            "--site-id",
            "1",
            "--out",
            str(tmp_path / "s.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert run.returncode == 2
    assert "no token: pass --token or set PATROL_API_TOKEN" in run.stderr
