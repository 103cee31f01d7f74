"""Lost and evicted sequence ranges per wearable, exposed at /devices/{id}/sequence."""

from __future__ import annotations

from typing import Any

import pytest
from cloudtest import ADMIN_TOKEN, World, frame_item, make_frame

from cloud_api.sequences import merge, subtract
from patrol_protocol.frames import Eviction, EvictionReason, Sos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
URL = "/api/v1/devices/0000a001/sequence"


def _send(world: World, *seqs: int) -> None:
    items = [frame_item(seq, make_frame(Sos(trigger=1), seq=seq)) for seq in seqs]
    assert [r["status"] for r in world.results(*items)] == ["accepted"] * len(seqs)


def _evict(world: World, seq: int, first: int, last: int) -> None:
    body = Eviction(first_seq=first, last_seq=last, reason=EvictionReason.FLASH_FULL)
    assert world.results(frame_item(seq, make_frame(body, seq=seq)))[0]["status"] == "accepted"


def _state(world: World) -> dict[str, Any]:
    response = world.client.get(URL, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ranges(ranges: list[tuple[int, int]]) -> list[dict[str, int]]:
    return [{"first_seq": a, "last_seq": b} for a, b in ranges]


def _expect(
    world: World,
    *,
    received: int,
    highest: int,
    lost: list[tuple[int, int]],
    evicted: list[tuple[int, int]],
) -> None:
    assert _state(world) == {
        "device_id": "0000a001",
        "received": received,
        "highest_seq": highest,
        "lost": _ranges(lost),
        "lost_count": sum(b - a + 1 for a, b in lost),
        "evicted": _ranges(evicted),
        "evicted_count": sum(b - a + 1 for a, b in evicted),
    }


def test_in_order_frames_leave_no_ranges(world: World) -> None:
    _send(world, 1, 2, 3)
    _send(world, 4, 5)
    _expect(world, received=5, highest=5, lost=[], evicted=[])


def test_gaps_are_lost_ranges_within_and_across_batches(world: World) -> None:
    _send(world, 2, 3, 6, 7, 10)
    _expect(world, received=5, highest=10, lost=[(1, 1), (4, 5), (8, 9)], evicted=[])
    _send(world, 14)
    _expect(world, received=6, highest=14, lost=[(1, 1), (4, 5), (8, 9), (11, 13)], evicted=[])


def test_late_frames_shrink_and_split_lost_ranges(world: World) -> None:
    _send(world, 1, 10)
    _send(world, 5)
    _expect(world, received=3, highest=10, lost=[(2, 4), (6, 9)], evicted=[])
    _send(world, 2, 9, 3)
    _expect(world, received=6, highest=10, lost=[(4, 4), (6, 8)], evicted=[])
    _send(world, 4, 6, 7, 8)
    _expect(world, received=10, highest=10, lost=[], evicted=[])


def test_duplicates_do_not_count_as_received(world: World) -> None:
    _send(world, 1, 3)
    results = world.results(frame_item(1, make_frame(Sos(trigger=1), seq=1)))
    assert results[0]["status"] == "duplicate"
    _expect(world, received=2, highest=3, lost=[(2, 2)], evicted=[])


def test_eviction_turns_a_known_gap_into_evicted(world: World) -> None:
    _send(world, 1, 9)
    _evict(world, 10, 3, 6)
    _expect(world, received=3, highest=10, lost=[(2, 2), (7, 8)], evicted=[(3, 6)])


def test_eviction_ahead_of_the_gap_keeps_it_evicted(world: World) -> None:
    # The eviction frame (seq 8) arrives first; the gap opens with it, minus 2..6.
    _send(world, 1)
    _evict(world, 8, 2, 6)
    _expect(world, received=2, highest=8, lost=[(7, 7)], evicted=[(2, 6)])
    _send(world, 12)
    _expect(world, received=3, highest=12, lost=[(7, 7), (9, 11)], evicted=[(2, 6)])


def test_received_seqs_inside_an_eviction_stay_received(world: World) -> None:
    _send(world, 1, 4)
    _evict(world, 8, 2, 6)
    _expect(world, received=3, highest=8, lost=[(7, 7)], evicted=[(2, 3), (5, 6)])
    # A frame the wearable claimed to drop turns up after all (sent before eviction).
    _send(world, 5)
    _expect(world, received=4, highest=8, lost=[(7, 7)], evicted=[(2, 3), (6, 6)])


def test_eviction_late_after_the_gap_was_recorded(world: World) -> None:
    _send(world, 1, 20)
    _send(world, 12)
    _evict(world, 21, 5, 15)
    _expect(world, received=4, highest=21, lost=[(2, 4), (16, 19)], evicted=[(5, 11), (13, 15)])


def test_unknown_or_bad_device_ids(world: World) -> None:
    assert world.client.get(URL, headers=ADMIN).status_code == 404
    assert world.client.get("/api/v1/devices/xyz/sequence", headers=ADMIN).status_code == 422
    assert world.client.get(URL).status_code == 401


@pytest.mark.parametrize(
    ("ranges", "cut", "expected"),
    [
        ([(1, 10)], (4, 6), [(1, 3), (7, 10)]),
        ([(1, 10)], (1, 10), []),
        ([(1, 3), (8, 9)], (3, 8), [(1, 2), (9, 9)]),
        ([(5, 6)], (1, 2), [(5, 6)]),
    ],
)
def test_subtract(
    ranges: list[tuple[int, int]], cut: tuple[int, int], expected: list[tuple[int, int]]
) -> None:
    assert subtract(ranges, cut) == expected


def test_merge_joins_adjacent_and_overlapping() -> None:
    assert merge([(7, 9), (1, 2), (3, 4), (8, 12), (20, 20)]) == [(1, 4), (7, 12), (20, 20)]
