"""The ``patrol-edge`` CLI as a real process: status, queue stats, dead letters, config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from edgetest import heartbeat_frame

from edge_agent.inbound import Rejected, check_up_message
from edge_agent.queue import EdgeQueue
from edge_agent.runlock import QueueLock

TOPIC = "patrol/v1/dev/0000a001/up"
T0_MS = 1_795_580_000_000
SECRET = "pk_never-printed"


def _env(queue_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_EDGE_")}
    return env | {
        "PATROL_EDGE_CLOUD_URL": "https://cloud.example",
        "PATROL_EDGE_GATEWAY_ID": "gw-site-1",
        "PATROL_EDGE_GATEWAY_API_KEY": SECRET,
        "PATROL_EDGE_QUEUE_PATH": str(queue_path),
        "PATROL_EDGE_METRICS_PORT": "1",  # nothing listens there: "agent not reachable"
        **extra,
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert SECRET not in done.stdout + done.stderr
    return done


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    """A queue with 2 heartbeats (one a duplicate), 1 SOS-free scan-less stream, 2 dead letters."""
    path = tmp_path / "edge.sqlite3"
    with EdgeQueue(path) as queue:
        queue.append_many(
            [
                check_up_message(TOPIC, heartbeat_frame(0x0000A001, 1), T0_MS),
                check_up_message(TOPIC, heartbeat_frame(0x0000A001, 1), T0_MS + 1),
                check_up_message(TOPIC, heartbeat_frame(0x0000A001, 2), T0_MS + 2),
                Rejected("truncated", b"\x01", TOPIC, T0_MS + 3, "frame: 1 byte"),
            ]
        )
        # the cloud rejected seq 2 (e.g. the wearable was not provisioned yet)
        queue.delete([], rejected={2: "unknown_device"})
    return path


def test_status_without_a_running_agent_reads_the_queue_and_exits_1(queue_path):
    done = _cli(_env(queue_path), "status")
    assert done.returncode == 1
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines == [
        "agent not reachable (http://127.0.0.1:1/healthz)",
        f"queue file {queue_path}",
        "depth 1",
        "oldest unsent 2026-11-25 04:13:20.000Z",
        "dead letters 2",
        "duplicates 1",
        "evicted 0",
    ]


def test_queue_stats_json_has_exact_counts(queue_path):
    done = _cli(_env(queue_path), "queue", "stats", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["depth"] == {"urgent": 0, "scan": 0, "event": 0, "bulk": 1}
    assert set(stats["oldest_age_s"]) == {"bulk"}
    assert (stats["dead_letters"], stats["duplicates_total"], stats["evicted_total"]) == (2, 1, 0)
    assert stats["last_gw_seq"] == 2
    assert stats["queued_bytes"] == len(heartbeat_frame(0x0000A001, 1)) + 104


def test_queue_stats_table_is_readable(queue_path):
    done = _cli(_env(queue_path), "queue", "stats")
    assert done.returncode == 0, done.stderr
    rows = [line.split("│") for line in done.stdout.splitlines() if "│ bulk" in line]
    assert [[cell.strip() for cell in row[1:4]] for row in rows] == [
        ["bulk", "1", "2026-11-25 04:13:20.000Z"]
    ]
    assert "dead letters 2; evicted 0; duplicates 1; last gw_seq 2" in done.stdout


def test_dead_letter_list_and_retry(queue_path):
    env = _env(queue_path)
    listed = [
        json.loads(line) for line in _cli(env, "dead-letter", "list", "--json").stdout.splitlines()
    ]
    assert [(d["id"], d["source"], d["reason"], d["item_type"]) for d in listed] == [
        (1, "ingest", "truncated", None),
        (2, "cloud", "unknown_device", "device_frame"),
    ]
    assert listed[1]["raw_hex"] == heartbeat_frame(0x0000A001, 2).hex()
    table = _cli(env, "dead-letter", "list", "--reason", "unknown_device").stdout
    assert "unknown_device" in table and "truncated" not in table

    # refused while an agent holds the queue
    with QueueLock(queue_path):
        busy = _cli(env, "dead-letter", "retry", "2")
    assert busy.returncode == 1
    assert "a patrol-edge agent runs on this queue" in busy.stderr

    done = _cli(env, "dead-letter", "retry", "--all")
    assert done.returncode == 1  # the truncated one cannot pass its check again
    assert "requeued 1: [2]" in done.stdout
    assert "still refused 1: truncated" in done.stdout
    with EdgeQueue(queue_path) as queue:
        assert [i.seq for i in queue.frames(0x0000A001)] == [1, 2]
        assert [d.id for d in queue.dead_letters()] == [1]


def test_config_file_and_environment_with_errors_naming_the_key(tmp_path, queue_path):
    config = tmp_path / "edge.toml"
    config.write_text(
        'cloud_url = "https://cloud.example"\n'
        'gateway_id = "gw-site-1"\n'
        f'gateway_api_key = "{SECRET}"\n'
        f'queue_path = "{queue_path}"\n'
        "metrics_port = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_EDGE_")}
    ok = _cli(env, "--config", str(config), "queue", "stats", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["last_gw_seq"] == 2

    # the environment wins over the file
    other = tmp_path / "missing.sqlite3"
    overridden = _cli(
        env | {"PATROL_EDGE_QUEUE_PATH": str(other)}, "-c", str(config), "queue", "stats"
    )
    assert overridden.returncode == 1
    assert f"{other}: no queue file" in overridden.stderr

    config.write_text(config.read_text() + "forward_batch_items = 9000\nmqtt_prot = 1884\n")
    bad = _cli(env | {"PATROL_EDGE_MQTT_PORT": "eighteen"}, "-c", str(config), "status")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "configuration error: invalid configuration:",
        "  environment variable PATROL_EDGE_MQTT_PORT: Input should be a valid integer, "
        "unable to parse string as an integer",
        f"  {config}: key 'forward_batch_items': Input should be less than or equal to 500",
        f"  {config}: key 'mqtt_prot': unknown setting",
    ]

    config.write_text("queue_path = [\n")
    broken = _cli(env, "-c", str(config), "status")
    assert broken.returncode == 2
    assert broken.stderr.startswith(f"configuration error: config file {config} is not valid TOML:")

    missing = _cli(env, "-c", str(tmp_path / "nope.toml"), "status")
    assert missing.returncode == 2
    assert f"config file {tmp_path / 'nope.toml'} does not exist" in missing.stderr

    required = _cli(env | {"PATROL_EDGE_CONFIG": str(tmp_path / "empty.toml")}, "status")
    assert required.returncode == 2  # PATROL_EDGE_CONFIG names the file too
    (tmp_path / "empty.toml").write_text("")
    required = _cli(env | {"PATROL_EDGE_CONFIG": str(tmp_path / "empty.toml")}, "status")
    assert (
        f"key 'cloud_url' (set it in {tmp_path / 'empty.toml'} or as PATROL_EDGE_CLOUD_URL): "
        "required, not set" in required.stderr
    )


def test_status_of_a_running_agent_reads_its_healthz(edge_settings):
    from edgetest import free_port

    from edge_agent.agent import EdgeAgent
    from edge_agent.settings import EdgeSettings

    port = free_port()
    settings = EdgeSettings(**edge_settings.model_dump() | {"metrics_port": port})
    with EdgeAgent(settings) as agent:
        assert agent.wait_ready(10)
        env = _env(settings.queue_path, PATROL_EDGE_METRICS_PORT=str(port))
        done = _cli(env, "status")
        # the agent runs beside it: the queue file is read with mode=ro, never locked or moved
        stats = _cli(env, "queue", "stats", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[0].startswith("agent ok (") or lines[0].startswith("agent degraded (")
    assert "broker connected" in lines
    assert "ble disabled" in lines
    assert "depth 1" in lines  # the gateway_health heartbeat (the cloud is unreachable here)
    assert json.loads(stats.stdout)["depth"]["bulk"] == 1
