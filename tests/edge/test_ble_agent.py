"""The agent with BLE enabled, in a container without Bluetooth: it runs and says why."""

from __future__ import annotations

from bletest import IBEACON_ADV, advertisement, device
from edgetest import wait_until

from edge_agent.agent import EdgeAgent
from edge_agent.ble.scanner import BleStatus
from edge_agent.settings import EdgeSettings


def test_agent_runs_with_ble_enabled_and_no_adapter(edge_settings: EdgeSettings) -> None:
    settings = edge_settings.model_copy(
        update={"ble_enabled": True, "ble_retry_min_s": 0.01, "ble_retry_max_s": 0.05}
    )
    with EdgeAgent(settings) as agent:
        assert agent.wait_ready(10)

        def ble() -> BleStatus:
            status = agent.status().ble
            assert status is not None
            return status

        wait_until(lambda: ble().failures >= 1, what="a reported BLE failure")
        assert (ble().state, ble().scanning_mode) == ("unavailable", None)
        assert ble().error == "FileNotFoundError: [Errno 2] No such file or directory"
        # MQTT ingest and the BLE worker keep working: a sighting is committed
        assert agent.ble is not None
        agent.ble.callback(device("C0:FF:EE:00:00:01"), advertisement(IBEACON_ADV, -60))
        wait_until(lambda: agent.queue.depth() == 1, what="the sighting in the queue")
        scanner = agent.ble
    assert scanner.status().state == "stopped"


def test_agent_without_ble_reports_none(edge_settings: EdgeSettings) -> None:
    with EdgeAgent(edge_settings) as agent:
        assert agent.wait_ready(10)
        assert agent.status().ble is None
        assert agent.ble is None
