"""Gateway health: the heartbeat reaches the REAL cloud and its database; /metrics and /healthz
are scraped from the running agent and parsed with prometheus_client's own text parser."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cloudserver import start_cloud
from edgetest import free_port, heartbeat_frame, wait_until
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.agent import EdgeAgent
from edge_agent.health import cpu_temperature_c
from edge_agent.settings import EdgeSettings


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_and_health_after_a_known_stream(edge_settings, cloud, wearables):
    settings = EdgeSettings(
        **edge_settings.model_dump()
        | {
            "cloud_url": cloud.url,
            "gateway_api_key": cloud.api_key,
            "health_interval_s": 3600,  # only the heartbeats this test asks for
        }
    )
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    with EdgeAgent(settings) as agent:
        assert agent.wait_ready(10)
        assert agent.metrics_server is not None
        port = agent.metrics_server.port
        # the stream: 5 heartbeats, seq 3 again (a duplicate), 2 malformed payloads
        for seq in range(1, 6):
            wearable.publish(heartbeat_frame(device, seq))
        wearable.publish(heartbeat_frame(device, 3))
        wearable.publish(b"\x01")
        wearable.publish(b"\x02not a frame")
        wait_until(lambda: agent.status().mqtt.received == 8, what="8 messages")
        wait_until(lambda: agent.queue.depth() == 0, 30, what="the forwarder to drain")
        agent.reporter.report_once()  # a heartbeat with the stream's numbers
        wait_until(lambda: agent.queue.depth() == 0, 30, what="the heartbeat to be forwarded")

        m = scrape(port)
        assert m[("patrol_edge_ingest_received_total", ())] == 8
        assert m[("patrol_edge_ingest_stored_total", ())] == 5
        assert m[("patrol_edge_ingest_duplicates_total", ())] == 1
        assert m[("patrol_edge_ingest_dead_lettered_total", ())] == 2
        assert m[("patrol_edge_dead_letters", ())] == 2
        # 5 frames + the heartbeat queued at start + the one above
        assert m[("patrol_edge_forwarded_total", ())] == 7
        assert m[("patrol_edge_forward_rejected_total", ())] == 0
        assert m[("patrol_edge_forward_throttled_total", ())] == 0
        assert m[("patrol_edge_forward_batches_total", (("result", "failed"),))] == 0
        ok_batches = m[("patrol_edge_forward_batches_total", (("result", "ok"),))]
        assert ok_batches >= 2
        latency_count = sum(
            v for (name, _), v in m.items() if name == "patrol_edge_forward_latency_seconds_count"
        )
        assert latency_count == ok_batches  # one observation per answered POST
        for priority in ("urgent", "scan", "event", "bulk"):
            assert m[("patrol_edge_queue_depth", (("priority", priority),))] == 0
        assert m[("patrol_edge_oldest_unsent_age_seconds", ())] == 0
        assert m[("patrol_edge_broker_connected", ())] == 1
        assert (
            m[("patrol_edge_ble_adapter_state", (("patrol_edge_ble_adapter_state", "disabled"),))]
            == 1
        )
        assert m[("patrol_edge_healthy", ())] == 1
        assert m[("patrol_edge_evicted_total", ())] == 0

        healthz = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert healthz.status_code == 200
        body = healthz.json()
        assert body["status"] in ("ok", "degraded")  # degraded only for an unsynced clock
        assert [p for p in body["problems"] if not p.startswith("clock:")] == []
        assert (body["broker_connected"], body["queue_depth"], body["dead_letters"]) == (
            True,
            0,
            2,
        )
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=10).status_code == 404

    observations = cloud.rows(
        "SELECT kind, gw_seq, observation, gateway_clock_synced FROM gateway_observations "
        "ORDER BY gw_seq"
    )
    assert [kind for kind, *_ in observations] == ["gateway_health", "gateway_health"]
    last = observations[-1][2]
    last = json.loads(last) if isinstance(last, str) else last
    assert (last["queue_depth"], last["dead_letters"], last["forwarded_total"]) == (0, 2, 6)
    assert (last["broker_connected"], last["ble_state"], last["cloud_failing"]) == (
        True,
        "disabled",
        False,
    )
    assert last["disk_free_bytes"] > 0 and last["disk_total_bytes"] >= last["disk_free_bytes"]
    # the batch's clock_synced is the state of the clock that stamped it (constant here)
    assert bool(observations[-1][3]) is last["clock_ntp_synced"]


def test_healthz_is_503_without_a_broker(tmp_path):
    settings = EdgeSettings(
        mqtt_port=free_port(),  # nothing listens: the agent can take no events
        cloud_url="http://127.0.0.1:9",
        gateway_id="gw-test",
        gateway_api_key="unused",
        queue_path=tmp_path / "edge.sqlite3",
        metrics_port=0,
    )
    with EdgeAgent(settings) as agent:
        assert agent.metrics_server is not None
        port = agent.metrics_server.port
        wait_until(lambda: agent.forwarder.failing_since_ms is not None, what="the cloud to fail")
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "failing"
        assert "broker: not connected" in body["problems"]
        assert any(p.startswith("cloud: failing (transport error") for p in body["problems"])
        m = scrape(port)
        assert m[("patrol_edge_broker_connected", ())] == 0
        assert m[("patrol_edge_healthy", ())] == 0
        assert m[("patrol_edge_cloud_failing", ())] == 1
        assert m[("patrol_edge_queue_depth", (("priority", "bulk"),))] == 1  # its heartbeat
        assert m[("patrol_edge_oldest_unsent_age_seconds", ())] >= 0


def test_metrics_port_in_use_is_not_fatal(tmp_path, caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = EdgeSettings(
            mqtt_port=free_port(),
            cloud_url="http://127.0.0.1:9",
            gateway_id="gw-test",
            gateway_api_key="unused",
            queue_path=tmp_path / "edge.sqlite3",
            metrics_port=taken.getsockname()[1],
        )
        with EdgeAgent(settings) as agent:
            assert agent.metrics_server is None
            assert agent.ingest is not None and agent.ingest.committer_alive
    assert "cannot serve /healthz and /metrics" in caplog.text


def test_cpu_temperature_from_a_thermal_tree(tmp_path):
    assert cpu_temperature_c(tmp_path / "absent") is None
    for name, zone_type, millideg in (
        ("thermal_zone0", "gpu-thermal", "71000"),
        ("thermal_zone1", "cpu-thermal", "48312"),
    ):
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(zone_type + "\n")
        (zone / "temp").write_text(millideg + "\n")
    assert cpu_temperature_c(tmp_path) == 48.3  # the CPU zone, whatever its number
    (tmp_path / "thermal_zone1" / "temp").write_text("garbage")
    assert cpu_temperature_c(tmp_path) == 71.0  # the next zone that reads


def test_uptime_and_version_in_the_heartbeat(tmp_path):
    settings = EdgeSettings(
        mqtt_port=free_port(),
        cloud_url="http://127.0.0.1:9",
        gateway_id="gw-test",
        gateway_api_key="unused",
        queue_path=tmp_path / "edge.sqlite3",
        metrics_enabled=False,
    )
    agent = EdgeAgent(settings)
    try:
        time.sleep(0)  # snapshot works before start too (no ingest yet)
        health = agent.health()
        assert health.status == "failing"
        assert health.agent_version == "0.1.0"
        body = health.observation_body()
        assert body["kind"] == "gateway_health"
        assert body["problems"] == ", ".join(health.problems)
    finally:
        agent.stop()
