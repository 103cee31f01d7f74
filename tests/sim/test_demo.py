"""The demo command, run as a newcomer runs it, must end with verified rounds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from patrol_sim.guard import round_walk_s
from patrol_sim.site import demo_site

DEMO_TIMEOUT_S = 240


def test_demo_walks_two_rounds_and_prints_each_posts_summary(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "patrol_cli",
            "demo",
            "--once",
            "--shift-s",
            "60",
            "--round-interval-s",
            "30",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    cells = [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]
    assert cells == [
        ["Main gate", "2/2", "8/8", "100%", "-"],
        ["Warehouse", "1/2", "7/8", "88%", "round 2: Roof access"],
    ]
    assert "events accepted" in result.stdout and "rejected 0" in result.stdout

    engine = create_engine(f"sqlite:///{data / 'cloud.sqlite3'}")
    with engine.connect() as conn:
        by_kind = dict(
            conn.execute(
                text("SELECT kind, count(*) FROM events WHERE kind IN (1, 2) GROUP BY kind")
            ).all()
        )
        assurance = dict(
            conn.execute(
                text("SELECT assurance, count(*) FROM events WHERE kind = 1 GROUP BY assurance")
            ).all()
        )
    engine.dispose()
    # Main gate: 2 rounds x (2 NTAG 424 + 1 NTAG21x + 1 beacon);
    # warehouse: 2 rounds x (2 NTAG 424 + 2 beacons), one beacon skipped.
    assert by_kind == {1: 10, 2: 5}
    assert assurance == {"high": 8, "low": 2}


def test_demo_refuses_a_round_interval_too_short_to_walk() -> None:
    longest = max(round_walk_s(post) for post in demo_site().posts)
    result = subprocess.run(
        [sys.executable, "-m", "patrol_cli", "demo", "--once", "--round-interval-s", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert f"a round takes {longest:.1f} s to walk" in result.stdout


def test_round_walk_adds_walking_taps_and_beacon_dwell() -> None:
    gate, warehouse = demo_site().posts
    # start offset 2 + walks (2 + 3 + 3 + 3) + three taps of 1.2 + one 4 s beacon dwell
    assert round_walk_s(gate) == pytest.approx(20.6)
    # start offset 2 + walks (2 + 3 + 3 + 3) + two taps of 1.2 + two 4 s beacon dwells
    assert round_walk_s(warehouse) == pytest.approx(23.4)


def test_api_port_falls_back_to_a_free_one_when_taken_or_zero() -> None:
    from patrol_sim.demo import _free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = _free_port(port)
        assert chosen != port and chosen > 0
    assert _free_port(0) > 0
