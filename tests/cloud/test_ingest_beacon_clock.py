"""BLE checkpoint beacons: each beacon's clock offset is tracked; its step must fit a window.

A beacon advert carries ``step`` = the beacon's own clock / 10 s. Its MAC proves
who made it, not when: the step does (docs/protocol.md). The cloud keeps each
beacon's estimated offset (``beacon_clocks``), moved half way to every accepted
in-window advert, and checks new adverts against it (cloud_api.verify.track_beacon_step).

Every device time below is chosen so that the beacon's clock sits in the middle of
its step: the offset an advert implies is then exactly the beacon's true offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloudtest import (
    BEACON_ID,
    BEACON_KEY,
    COMPANY_ID,
    T0,
    World,
    advert_item,
    frame_item,
    make_frame,
)

from patrol_protocol.adverts import encode_beacon_payload
from patrol_protocol.errors import REJECT_REASONS
from patrol_protocol.frames import BleVisit

STEP_S = 10


def beacon_payload(step: int, *, key: bytes = BEACON_KEY) -> bytes:
    return encode_beacon_payload(
        key_id=1,
        beacon_id=BEACON_ID,
        step=step,
        tx_power_dbm=-59,
        battery_pct=93,
        company_id=COMPANY_ID,
        key=key,
    )


def visit_at(seq: int, time_s: int, step: int) -> dict[str, Any]:
    """A wearable's BLE_VISIT signed at device time ``time_s`` carrying beacon ``step``."""
    body = BleVisit(rssi_dbm=-60, dwell_s=30, company_id=COMPANY_ID, adv=beacon_payload(step))
    received = datetime.fromtimestamp(time_s + 1, UTC)
    return frame_item(seq, make_frame(body, seq=seq, time_s=time_s), received_at=received)


def heard(beacon_offset_s: int, at_s: int) -> tuple[int, int]:
    """(device time, step) for a beacon ``beacon_offset_s`` ahead, its clock mid-step at
    ``at_s`` (a multiple of 10)."""
    return at_s - (beacon_offset_s - 5), at_s // STEP_S


def mid_step(offset_s: int, time_s: int) -> tuple[int, int]:
    """(device time, step) at device time ``time_s`` of a beacon ``offset_s`` ahead, whose
    clock is then mid-step (``time_s + offset_s`` ends in 5)."""
    assert (time_s + offset_s) % STEP_S == 5
    return time_s, (time_s + offset_s) // STEP_S


def clock(world: World) -> tuple[int, int, int, int]:
    """(offset_ms, samples, highest_step, pending_count) of the test beacon."""
    rows = world.rows("SELECT offset_ms, samples, highest_step, pending_count FROM beacon_clocks")
    assert len(rows) == 1
    offset_ms, samples, highest_step, pending_count = rows[0]
    return int(offset_ms), int(samples), int(highest_step), int(pending_count)


def one(world: World, item: dict[str, Any]) -> dict[str, Any]:
    (result,) = world.results(item)
    return result


def flags_of(world: World, seq: int) -> list[str]:
    (event,) = [e for e in world.events() if e.seq == seq]
    return list(event.flags)


def test_drift_is_tracked_with_exact_offsets(world: World) -> None:
    # The beacon gains 3 s a minute (5%, an ESP32 RC clock in deep sleep): 5, 8, 11,
    # 14, 17 s ahead. Each advert moves the estimate half way: the exact integers.
    expected = [5000, 6500, 8750, 11375, 14187]
    for i, offset_s in enumerate([5, 8, 11, 14, 17]):
        time_s, step = heard(offset_s, T0 - 240 + 60 * i)
        result = one(world, visit_at(i + 1, time_s, step))
        assert result["status"] == "accepted", result
        assert clock(world) == (expected[i], i + 1, step, 0)
        assert flags_of(world, i + 1) == []
    estimated_at = world.scalar("SELECT estimated_at FROM beacon_clocks")
    assert str(estimated_at).startswith("2026-11-25")  # stored as UTC text or timestamptz
    # The lagging estimate still accepts the beacon 40 s ahead of where it started.
    time_s, step = heard(20, T0 + 60)
    assert one(world, visit_at(6, time_s, step))["status"] == "accepted"
    assert flags_of(world, 6) == []
    assert clock(world)[0] == 14187 + (20000 - 14187) // 2


def test_replayed_beacon_advert_is_rejected(world: World) -> None:
    # Heard at T0-100 (step s) and T0-40 (step s+6); then step s+5, an advert recorded
    # 10 s before the second one, turns up as heard at T0-20: replayed_counter. It is
    # even inside the window (offset 5 s expected, -25 s implied, window 31 s): the
    # order of steps and times gives it away.
    t1, s = mid_step(5, T0 - 100)
    t2, s2 = mid_step(5, T0 - 40)
    assert s2 == s + 6
    assert [r["status"] for r in world.results(visit_at(1, t1, s), visit_at(2, t2, s2))] == [
        "accepted",
        "accepted",
    ]
    replay = one(world, visit_at(3, T0 - 20, s + 5))
    assert (replay["status"], replay["reason"]) == ("rejected", "replayed_counter")
    assert "replayed_counter" in REJECT_REASONS
    assert world.scalar("SELECT count(*) FROM events") == 2
    assert world.scalar("SELECT reason FROM rejected_events") == "replayed_counter"
    assert clock(world) == (5000, 2, s2, 0)


def test_cloned_beacon_is_flagged_and_cannot_move_the_clock(world: World) -> None:
    # A clone made with the stolen key keeps its own clock, 10 minutes ahead. Its
    # adverts verify (same key) but sit 600 s off the tracked clock: accepted for a
    # supervisor to review, flagged beacon_step_skew, and the estimate stays put, so
    # the genuine beacon is still accepted without a flag afterwards.
    t1, s1 = mid_step(5, T0 - 300)
    assert one(world, visit_at(1, t1, s1))["status"] == "accepted"
    for seq, at_s in ((2, T0 - 240), (3, T0 - 180)):
        time_s, step = mid_step(605, at_s)
        assert one(world, visit_at(seq, time_s, step))["status"] == "accepted"
        assert flags_of(world, seq) == ["beacon_step_skew"]
    assert clock(world) == (5000, 1, s1, 2)
    t4, s4 = mid_step(5, T0 - 120)
    assert one(world, visit_at(4, t4, s4))["status"] == "accepted"
    assert flags_of(world, 4) == []
    assert clock(world) == (5000, 2, s4, 0)


def test_skewed_beacon_step_is_flagged_not_rejected(world: World) -> None:
    # A step 2 minutes behind the tracked clock (window: 30 s plus 5% of the 180 s
    # since the estimate), though still after the last one: flagged, kept, clock unmoved.
    t1, s1 = mid_step(5, T0 - 120)
    assert one(world, visit_at(1, t1, s1))["status"] == "accepted"
    time_s, step = mid_step(-115, T0 + 60)
    assert step == s1 + 6
    result = one(world, visit_at(2, time_s, step))
    assert (result["status"], result["reason"]) == ("accepted", None)
    assert flags_of(world, 2) == ["beacon_step_skew"]
    assert clock(world) == (5000, 1, s1, 1)


def test_a_restarted_beacon_is_re_anchored_after_three_agreeing_adverts(world: World) -> None:
    # After a reset the beacon counts from another origin (here 1 hour ahead): the
    # first two such adverts are flagged and wait; the third agreeing one re-anchors.
    t1, s1 = mid_step(5, T0 - 300)
    assert one(world, visit_at(1, t1, s1))["status"] == "accepted"
    for seq in (2, 3, 4):
        time_s, step = mid_step(3605, T0 - 300 + 60 * (seq - 1))
        assert one(world, visit_at(seq, time_s, step))["status"] == "accepted"
    assert [flags_of(world, seq) for seq in (2, 3, 4)] == [
        ["beacon_step_skew"],
        ["beacon_step_skew"],
        ["beacon_step_skew", "beacon_clock_reset"],
    ]
    assert clock(world)[:2] == (3_605_000, 1)
    time_s, step = mid_step(3605, T0)
    assert one(world, visit_at(5, time_s, step))["status"] == "accepted"
    assert flags_of(world, 5) == []


def test_gateway_heard_advert_moves_the_clock_only_with_a_synced_gateway_clock(
    world: World,
) -> None:
    # RECEIVED_AT of advert items is T0+5: step T0/10 is mid-step there, offset 0 s.
    unsynced = world.results(advert_item(1, beacon_payload(T0 // 10)), clock_synced=False)
    assert unsynced[0]["status"] == "accepted"
    assert world.scalar("SELECT count(*) FROM beacon_clocks") == 0
    synced = world.results(advert_item(2, beacon_payload(T0 // 10 + 1)))
    assert synced[0]["status"] == "accepted"
    # Step T0/10+1 at T0+5 s: 10 s ahead.
    assert clock(world) == (10_000, 1, T0 // 10 + 1, 0)
