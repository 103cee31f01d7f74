"""BleIngest fed with bleak's own objects: exact queue contents, injected clocks, no sleeps."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bleak.backends.scanner import AdvertisementData
from bletest import (
    EDDYSTONE_KEY,
    EDDYSTONE_TLM_ADV,
    EDDYSTONE_UID_ADV,
    IBEACON_ADV,
    advert_vector,
    advertisement,
    device,
    make_settings,
    manufacturer_adv,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.ble.scanner import BleIngest
from edge_agent.queue import EdgeQueue, QueuedItem

T0_MS = 1_795_580_000_000
"""2026-11-25T03:33:20Z on the gateway's wall clock."""
TAG_ADDR = "C0:FF:EE:00:00:01"
IBEACON_TAG = "ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9:1:2"
EDDY_TAG = "eddystone:8b0ca750095477cb3e77:000000000001"
PROTOCOL_REASONS = {"truncated", "oversized", "bad_version", "malformed", "unknown_kind"}


class Clock:
    """Monotonic seconds and wall milliseconds that only move when told to."""

    def __init__(self) -> None:
        self.mono_s = 1000.0
        self.wall = T0_MS

    def monotonic(self) -> float:
        return self.mono_s

    def wall_ms(self) -> int:
        return self.wall

    def set(self, t_s: float) -> None:
        """Move both clocks to t_s seconds after the start."""
        self.mono_s = 1000.0 + t_s
        self.wall = T0_MS + round(t_s * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def edge_queue(tmp_path: Path) -> Iterator[EdgeQueue]:
    queue = EdgeQueue(tmp_path / "q.sqlite3")
    yield queue
    queue.close()


def make_ingest(queue: EdgeQueue, clock: Clock, **overrides: Any) -> BleIngest:
    return BleIngest(
        make_settings(queue.path, **overrides),
        queue,
        monotonic=clock.monotonic,
        wall_ms=clock.wall_ms,
    )


def observations(items: list[QueuedItem]) -> list[dict[str, Any]]:
    return [json.loads(i.payload) for i in items if i.type == "observation"]


def summary(items: list[QueuedItem]) -> list[tuple[Any, ...]]:
    """(type, received_at offset ms, company id, rssi, payload or observation kind+tag)."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        offset = item.received_at_ms - T0_MS
        if item.type == "advert":
            out.append(("advert", offset, item.company_id, item.rssi_dbm, item.payload.hex()))
        else:
            body = json.loads(item.payload)
            out.append(("observation", offset, body["kind"], body["tag"]))
    return out


EQUIP = advert_vector("equipment_dev_company")
EQUIP_PAYLOAD = bytes.fromhex(EQUIP["payload_hex"])
EQUIP_ADV = bytes.fromhex(EQUIP["advertisement_hex"])
EQUIP_TAG = f"equip:{EQUIP['fields']['tag_id']:08x}"


def test_callback_data_matches_the_vector_advertisement() -> None:
    adv = advertisement(EQUIP_ADV, -61)
    assert adv.manufacturer_data == {0xFFFF: EQUIP_PAYLOAD}
    assert manufacturer_adv(0xFFFF, EQUIP_PAYLOAD) == EQUIP_ADV


def test_signed_advert_heard_10_per_second_is_one_record_per_interval(
    edge_queue: EdgeQueue, clock: Clock
) -> None:
    ingest = make_ingest(edge_queue, clock)
    dev = device(TAG_ADDR)
    for tenth in range(250):  # 25 s at 10 adverts a second
        clock.set(tenth / 10)
        ingest.callback(dev, advertisement(EQUIP_ADV, -60 - tenth % 7))
        if tenth % 10 == 9:
            ingest.process_pending()
    items = edge_queue.peek_batch(100)
    payload = EQUIP_PAYLOAD.hex()
    assert summary(items) == [
        ("advert", 0, 0xFFFF, -60, payload),
        ("advert", 10_000, 0xFFFF, -60 - 100 % 7, payload),
        ("advert", 20_000, 0xFFFF, -60 - 200 % 7, payload),
    ]
    status = ingest.status()
    assert (status.adverts, status.dropped, status.forwarded, status.suppressed) == (250, 0, 3, 247)
    assert (status.tags, status.tags_away, status.state) == (1, 0, "stopped")


def test_ibeacon_rssi_is_smoothed_and_reported_once_per_interval(
    edge_queue: EdgeQueue, clock: Clock
) -> None:
    ingest = make_ingest(edge_queue, clock)
    dev = device(TAG_ADDR)
    for t_s, rssi in [(0, -60), (1, -70), (2, -50), (10, -80)]:
        clock.set(t_s)
        ingest.callback(dev, advertisement(IBEACON_ADV, rssi))
    ingest.process_pending()
    seen = observations(edge_queue.peek_batch(100))
    base = {
        "kind": "ble_tag_seen",
        "source": "gateway",
        "tag": IBEACON_TAG,
        "format": "ibeacon",
        "address": TAG_ADDR,
        "tx_power_dbm": -58,
    }
    # EWMA, alpha 0.25: -60 -> -62.5 -> -59.375 -> -64.53125, rounded half away from zero
    assert seen == [{**base, "rssi_dbm": -60, "heard": 1}, {**base, "rssi_dbm": -65, "heard": 3}]
    assert ingest.tracker.tags[IBEACON_TAG].rssi_avg_dbm == -64.53125


def test_tag_away_and_back(edge_queue: EdgeQueue, clock: Clock) -> None:
    ingest = make_ingest(edge_queue, clock)
    dev = device(TAG_ADDR)
    clock.set(0)
    ingest.callback(dev, advertisement(EQUIP_ADV, -70))
    ingest.process_pending()
    clock.set(29.999)
    assert ingest.process_pending() is None  # not away yet
    clock.set(30)
    ingest.process_pending()
    assert ingest.status().tags_away == 1
    clock.set(31)
    assert ingest.process_pending() is None  # one away per absence
    clock.set(45)
    ingest.callback(dev, advertisement(EQUIP_ADV, -52))
    clock.set(46)
    ingest.callback(dev, advertisement(EQUIP_ADV, -53))
    ingest.process_pending()
    # arrival order: peek_batch sends the away/back observations before bulk adverts
    items = sorted(edge_queue.peek_batch(100), key=lambda item: item.gw_seq)
    payload = EQUIP_PAYLOAD.hex()
    assert summary(items) == [
        ("advert", 0, 0xFFFF, -70, payload),
        ("observation", 30_000, "ble_tag_away", EQUIP_TAG),
        ("observation", 45_000, "ble_tag_back", EQUIP_TAG),
        ("advert", 45_000, 0xFFFF, -52, payload),
    ]
    away, back = observations(items)
    assert away == {
        "kind": "ble_tag_away",
        "source": "gateway",
        "tag": EQUIP_TAG,
        "format": "equipment",
        "address": TAG_ADDR,
        "last_heard_ms": T0_MS,
        "away_after_s": 30.0,
        "rssi_dbm": -70,
    }
    assert back == {
        "kind": "ble_tag_back",
        "source": "gateway",
        "tag": EQUIP_TAG,
        "format": "equipment",
        "address": TAG_ADDR,
        "away_since_ms": T0_MS,
        "rssi_dbm": -52,
    }
    assert ingest.status().tags_away == 0


def test_eddystone_uid_and_tlm_health(edge_queue: EdgeQueue, clock: Clock) -> None:
    ingest = make_ingest(edge_queue, clock)
    dev = device(TAG_ADDR)
    clock.set(0)
    ingest.callback(dev, advertisement(EDDYSTONE_UID_ADV, -66))
    ingest.callback(dev, advertisement(EDDYSTONE_TLM_ADV, -66))
    clock.set(5)
    ingest.callback(dev, advertisement(EDDYSTONE_TLM_ADV, -66))  # within the interval
    ingest.process_pending()
    seen, health = observations(edge_queue.peek_batch(100))
    assert seen["tag"] == EDDY_TAG and seen["tx_power_dbm"] == -18
    assert health == {
        "kind": "ble_tag_health",
        "source": "gateway",
        "tag": EDDY_TAG,
        "format": "eddystone_tlm",
        "address": TAG_ADDR,
        "battery_mv": 3000,
        "temperature_c": 23.5,
        "adv_count": 123_456,
        "since_boot_ds": 10_000,
    }
    assert ingest.status().suppressed == 1


def test_full_buffer_drops_and_counts(edge_queue: EdgeQueue, clock: Clock) -> None:
    ingest = make_ingest(edge_queue, clock, ble_buffer_adverts=3)
    for n in range(5):
        ingest.callback(device(f"C0:FF:EE:00:00:{n:02X}"), advertisement(IBEACON_ADV, -60))
    status = ingest.status()
    assert (status.adverts, status.dropped) == (3, 2)
    ingest.process_pending()
    assert len(edge_queue.peek_batch(100)) == 1  # one iBeacon, heard from 3 addresses


def test_bad_adverts_are_counted_and_dead_lettered_once_per_interval(
    edge_queue: EdgeQueue, clock: Clock
) -> None:
    ingest = make_ingest(edge_queue, clock)
    dev = device(TAG_ADDR)
    bad_version = b"\x07" + EQUIP_PAYLOAD[1:]
    for t_s in (0, 1, 10):
        clock.set(t_s)
        ingest.callback(dev, AdvertisementData(None, {0xFFFF: bad_version}, {}, [], None, -60, ()))
    ingest.callback(
        dev, AdvertisementData(None, {}, {EDDYSTONE_KEY: b"\x20\x01"}, [], None, -60, ())
    )
    ingest.callback(dev, AdvertisementData(None, {0x0006: b"\x01\x09"}, {}, [], None, -60, ()))
    ingest.process_pending()
    assert ingest.status().bad == {"bad_version": 4}
    assert ingest.status().ignored == 1  # a Microsoft advert: not a tag, not bad
    letters = edge_queue.dead_letters()
    assert [(d.reason, d.raw.hex(), d.topic, d.received_at_ms - T0_MS) for d in letters] == [
        ("bad_version", "ffff" + bad_version.hex(), f"ble/{TAG_ADDR}", 0),
        ("bad_version", "ffff" + bad_version.hex(), f"ble/{TAG_ADDR}", 10_000),
    ]
    assert letters[0].detail == "signed advert: version=7, expected 1"
    assert edge_queue.peek_batch(10) == []


_company = st.sampled_from([0xFFFF, 0x004C, 0x02E5, 0x0006])
_mfr = st.one_of(
    st.binary(max_size=30),
    st.builds(lambda tail: b"\x02\x15" + tail, st.binary(max_size=30)),
    st.builds(lambda tail: b"\x01" + tail, st.binary(max_size=30)),
)
_svc = st.one_of(
    st.binary(max_size=30),
    st.builds(lambda tail: b"\x20\x00" + tail, st.binary(max_size=20)),
    st.builds(lambda tail: b"\x00" + tail, st.binary(max_size=25)),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(_company, _mfr, max_size=3),
            st.dictionaries(
                st.sampled_from([EDDYSTONE_KEY, "0000180f-0000-1000-8000-00805f9b34fb"]),
                _svc,
                max_size=2,
            ),
            st.integers(-(2**15), 2**15 - 1),  # BlueZ's RSSI is an int16
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fuzzed_adverts_never_crash_the_worker(
    adverts: list[tuple[dict[int, bytes], dict[str, bytes], int]],
) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        queue = EdgeQueue(Path(tmp) / "q.sqlite3", synchronous="OFF")
        try:
            ingest = make_ingest(queue, clock)
            for n, (mfr, svc, rssi) in enumerate(adverts):
                clock.set(n * 0.5)
                ingest.callback(
                    device(TAG_ADDR), AdvertisementData(None, mfr, svc, [], None, rssi, ())
                )
            ingest.process_pending()
            assert all(-128 <= i.rssi_dbm <= 127 for i in queue.peek_batch(100) if i.rssi_dbm)
            counters = ingest.tracker.counters
            assert counters.sightings == len(adverts)
            assert set(counters.bad) <= PROTOCOL_REASONS
            dead = queue.dead_letters(limit=1000)
            assert {d.reason for d in dead} == set(counters.bad)
            assert all(d.topic == f"ble/{TAG_ADDR}" and d.detail for d in dead)
        finally:
            queue.close()


@pytest.mark.parametrize(("rssi", "stored"), [(-200, -128), (-128, -128), (127, 127), (300, 127)])
def test_rssi_beyond_i8_is_clamped(
    edge_queue: EdgeQueue, clock: Clock, rssi: int, stored: int
) -> None:
    ingest = make_ingest(edge_queue, clock)
    ingest.callback(device(TAG_ADDR), advertisement(EQUIP_ADV, rssi))
    ingest.process_pending()
    assert [i.rssi_dbm for i in edge_queue.peek_batch(10)] == [stored]


def test_tlm_from_an_address_without_uid_is_named_by_address(
    edge_queue: EdgeQueue, clock: Clock
) -> None:
    ingest = make_ingest(edge_queue, clock)
    ingest.callback(device(TAG_ADDR), advertisement(EDDYSTONE_TLM_ADV, -66))
    ingest.process_pending()
    (health,) = observations(edge_queue.peek_batch(10))
    assert health["tag"] == f"eddystone-addr:{TAG_ADDR}"


def test_full_tag_table_forgets_the_longest_silent_tag(edge_queue: EdgeQueue, clock: Clock) -> None:
    ingest = make_ingest(edge_queue, clock)
    tracker = ingest.tracker
    tracker.config = dataclasses.replace(tracker.config, max_tags=2)
    for n, major in enumerate((1, 2, 3)):
        clock.set(n)
        adv = IBEACON_ADV[:-5] + major.to_bytes(2, "big") + IBEACON_ADV[-3:]
        ingest.callback(device(TAG_ADDR), advertisement(adv, -60))
    ingest.process_pending()
    prefix = "ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9"
    assert sorted(tracker.tags) == [f"{prefix}:2:2", f"{prefix}:3:2"]
    assert tracker.counters.tags_forgotten == 1
