"""Receive times stamped while the gateway clock was unsynced stay flagged after it syncs.

A Pi without a battery-backed clock stamps events with a wrong time until NTP
answers; the batch's ``clock_synced`` must describe the clock that stamped its
items, not the clock at send time. Checked against the REAL cloud's stored flag.
"""

from __future__ import annotations

import pytest
from cloudserver import GATEWAY_ID, start_cloud
from edgetest import FRAME_TIME_S, heartbeat_frame

from edge_agent.clock import ClockState, ClockWatch
from edge_agent.forwarder import Forwarder, ForwardOutcome
from edge_agent.inbound import ReceivedFrame, check_up_message
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings

DEVICE = 0x0000A001


class FakeClock:
    """What timedatectl would say, switchable by the test."""

    def __init__(self) -> None:
        self.synced = False
        self.checks = 0

    def __call__(self) -> ClockState:
        self.checks += 1
        return ClockState(self.synced, "timedatectl", f"NTPSynchronized={self.synced}")


def received(seq: int) -> ReceivedFrame:
    entry = check_up_message(
        f"patrol/v1/dev/{DEVICE:08x}/up", heartbeat_frame(DEVICE, seq), (FRAME_TIME_S + 9) * 1000
    )
    assert isinstance(entry, ReceivedFrame)
    return entry


@pytest.fixture
def cloud(tmp_path):
    server = start_cloud(tmp_path)
    yield server
    server.stop()


def test_unsynced_stamps_stay_flagged_after_sync_and_batches_never_mix(tmp_path, cloud):
    settings = EdgeSettings(
        cloud_url=cloud.url,
        gateway_id=GATEWAY_ID,
        gateway_api_key=cloud.api_key,
        queue_path=tmp_path / "edge.sqlite3",
    )
    clock = FakeClock()
    with EdgeQueue(settings.queue_path) as queue:
        watch = ClockWatch(queue, state=clock, interval_s=0)
        assert watch.check().synced is False  # boot without network: window open
        assert watch.unsynced_upto_gw_seq is None
        queue.append_many([received(1), received(2)])
        clock.synced = True  # NTP answers
        watch.check()
        assert watch.unsynced_upto_gw_seq == 2
        queue.append_many([received(3)])
        forwarder = Forwarder(settings, queue, clock=watch)
        try:
            # one batch per flag, oldest first: the two unsynced stamps, then the synced one
            assert forwarder.forward_once() == ForwardOutcome(sent=2, deleted=2, rejected=0)
            assert forwarder.forward_once() == ForwardOutcome(sent=1, deleted=1, rejected=0)
        finally:
            forwarder.stop()
    rows = cloud.rows("SELECT seq, gateway_clock_synced FROM events ORDER BY seq")
    assert [(seq, bool(flag)) for seq, flag in rows] == [(1, False), (2, False), (3, True)]


def test_the_window_survives_a_crash_before_the_clock_synced(tmp_path):
    path = tmp_path / "edge.sqlite3"
    clock = FakeClock()
    queue = EdgeQueue(path)
    watch = ClockWatch(queue, state=clock, interval_s=0)
    watch.check()  # unsynced
    queue.append_many([received(1)])
    queue.close()  # the power goes (no clean shutdown needed: set_meta commits at once)

    clock.synced = True
    with EdgeQueue(path) as queue:
        watch = ClockWatch(queue, state=clock, interval_s=0)
        assert watch.unsynced_upto_gw_seq is None  # still open from the last run
        assert watch.stamped_synced(1) is False  # the first check closes it at gw_seq 1
        assert watch.unsynced_upto_gw_seq == 1
        queue.append_many([received(2)])
        assert watch.stamped_synced(2) is True
    with EdgeQueue(path) as queue:  # and the closed watermark persists too
        assert ClockWatch(queue, state=clock).unsynced_upto_gw_seq == 1


def test_checks_are_cached_for_the_interval(tmp_path):
    clock = FakeClock()
    now = [0.0]
    with EdgeQueue(tmp_path / "edge.sqlite3") as queue:
        watch = ClockWatch(queue, state=clock, interval_s=30, monotonic_s=lambda: now[0])
        for _ in range(100):
            watch.stamped_synced(1)
        assert clock.checks == 1  # not one timedatectl process per item
        now[0] = 30.0
        watch.stamped_synced(1)
        assert clock.checks == 2
