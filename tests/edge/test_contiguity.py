"""Per-device sequence ranges behind the application ack (pure, no I/O)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.contiguity import DeviceSeqState, SeqRanges


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        ([(1, 1), (2, 2), (3, 3)], [(1, 3)]),
        ([(1, 1), (3, 3)], [(1, 1), (3, 3)]),
        ([(1, 1), (3, 3), (2, 2)], [(1, 3)]),
        ([(5, 9), (1, 4)], [(1, 9)]),
        ([(5, 9), (7, 12), (20, 20)], [(5, 12), (20, 20)]),
        ([(10, 10), (1, 1), (5, 5), (2, 9)], [(1, 10)]),
        ([(2**32 - 1, 2**32 - 1), (1, 2**32 - 2)], [(1, 2**32 - 1)]),
    ],
)
def test_ranges_merge_overlapping_and_adjacent(adds, expected):
    ranges = SeqRanges()
    for first, last in adds:
        ranges.add(first, last)
    assert ranges.ranges == expected


def test_ranges_contains_and_end_of_run():
    ranges = SeqRanges()
    ranges.add(3, 5)
    ranges.add(8, 8)
    assert [s for s in range(0, 11) if ranges.contains(s)] == [3, 4, 5, 8]
    assert [ranges.end_of_run(s) for s in (2, 3, 5, 6, 8)] == [None, 5, 5, None, 8]


def test_empty_range_is_refused():
    with pytest.raises(ValueError, match=r"empty range 5\.\.4"):
        SeqRanges().add(5, 4)


def test_gap_holds_the_ack_until_filled():
    state = DeviceSeqState(first_seq=1)
    acks = []
    for seq in (1, 2, 4):
        state.commit_frame(seq)
        acks.append(state.acked_seq)
    assert acks == [1, 2, 2]
    state.commit_frame(3)
    assert state.acked_seq == 4


def test_baseline_is_first_seen_minus_one():
    state = DeviceSeqState(first_seq=41)
    assert state.acked_seq == 40
    state.commit_frame(41)
    assert state.acked_seq == 41


def test_eviction_range_counts_for_the_ack_but_not_as_committed():
    state = DeviceSeqState(first_seq=1)
    for seq in (1, 2, 3, 4):
        state.commit_frame(seq)
    state.commit_frame(10, evicted=(5, 9))
    assert state.acked_seq == 10
    assert [state.is_duplicate(s) for s in (4, 5, 9, 10)] == [True, False, False, True]


def test_late_frame_below_baseline_never_moves_the_ack_back():
    state = DeviceSeqState(first_seq=4)
    for seq in (4, 5, 6):
        state.commit_frame(seq)
    state.commit_frame(1)
    assert state.acked_seq == 6
    assert state.committed.ranges == [(1, 1), (4, 6)]
    state.commit_frame(2)
    state.commit_frame(3)
    assert state.acked_seq == 6
    assert state.committed.ranges == [(1, 6)]


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 8)), min_size=1, max_size=20))
def test_ranges_equal_a_plain_set_of_sequences(adds):
    ranges = SeqRanges()
    model: set[int] = set()
    for first, length in adds:
        ranges.add(first, first + length)
        model |= set(range(first, first + length + 1))
    expected: list[tuple[int, int]] = []
    for seq in sorted(model):
        if expected and expected[-1][1] == seq - 1:
            expected[-1] = (expected[-1][0], seq)
        else:
            expected.append((seq, seq))
    assert ranges.ranges == expected
    assert all(ranges.contains(s) == (s in model) for s in range(0, 70))
