"""BLE evidence: beacon visits inside device frames, gateway-heard adverts, observations."""

from __future__ import annotations

from typing import Any

from cloudtest import (
    BEACON_ID,
    BEACON_KEY,
    COMPANY_ID,
    DEVICE,
    EQUIPMENT_ID,
    EQUIPMENT_KEY,
    PRESENCE_KEY,
    T0,
    World,
    advert_item,
    frame_item,
    load_vectors,
    make_frame,
    observation_item,
)

from patrol_protocol.adverts import (
    encode_beacon_payload,
    encode_equipment_payload,
    encode_presence_payload,
)
from patrol_protocol.frames import BleVisit

STEP = T0 // 10
BEACON_PAYLOAD = encode_beacon_payload(
    key_id=1,
    beacon_id=BEACON_ID,
    step=STEP,
    tx_power_dbm=-59,
    battery_pct=93,
    company_id=COMPANY_ID,
    key=BEACON_KEY,
)


def equipment(counter: int, battery_pct: int = 90) -> bytes:
    return encode_equipment_payload(
        key_id=1,
        tag_id=EQUIPMENT_ID,
        battery_pct=battery_pct,
        battery_mv=3900,
        flags=0,
        counter=counter,
        company_id=COMPANY_ID,
        key=EQUIPMENT_KEY,
    )


def visit(seq: int, adv: bytes) -> dict[str, Any]:
    body = BleVisit(rssi_dbm=-60, dwell_s=30, company_id=COMPANY_ID, adv=adv)
    return frame_item(seq, make_frame(body, seq=seq))


def test_ble_visit_with_a_verified_beacon_is_accepted(world: World) -> None:
    assert world.results(visit(1, BEACON_PAYLOAD))[0]["status"] == "accepted"
    [event] = world.events()
    assert (event.assurance, event.beacon_id, event.beacon_step, event.checkpoint_id) == (
        "medium",
        BEACON_ID,
        STEP,
        world.checkpoint_ids["beacon"],
    )
    assert event.body["beacon"]["beacon_id"] == BEACON_ID


def test_ble_visit_with_a_forged_beacon_mac_is_bad_mac(world: World) -> None:
    forged = BEACON_PAYLOAD[:-1] + bytes((BEACON_PAYLOAD[-1] ^ 1,))
    assert world.results(visit(1, forged))[0]["reason"] == "bad_mac"


def test_ble_visit_of_an_unregistered_beacon_is_unknown_device(world: World) -> None:
    payload = encode_beacon_payload(
        key_id=1,
        beacon_id=0x999,
        step=STEP,
        tx_power_dbm=-59,
        battery_pct=93,
        company_id=COMPANY_ID,
        key=BEACON_KEY,
    )
    assert world.results(visit(1, payload))[0]["reason"] == "unknown_device"


def test_beacon_advert_heard_by_the_gateway(world: World) -> None:
    key = f"beacon:{BEACON_ID:08x}:{STEP}"
    assert world.results(advert_item(18, BEACON_PAYLOAD)) == [
        {"gw_seq": 18, "status": "accepted", "key": key, "reason": None}
    ]
    assert world.results(advert_item(19, BEACON_PAYLOAD, rssi_dbm=-70)) == [
        {"gw_seq": 19, "status": "duplicate", "key": key, "reason": None}
    ]
    assert world.scalar("SELECT count(*) FROM advert_observations") == 1


def test_equipment_and_presence_adverts_are_verified(world: World) -> None:
    presence = encode_presence_payload(
        key_id=1,
        device_id=DEVICE,
        step=STEP,
        battery_pct=77,
        company_id=COMPANY_ID,
        key=PRESENCE_KEY,
    )
    results = world.results(advert_item(1, equipment(5)), advert_item(2, presence))
    assert [(r["status"], r["key"]) for r in results] == [
        ("accepted", f"equip:{EQUIPMENT_ID:08x}:5"),
        ("accepted", f"presence:{DEVICE:08x}:{STEP}"),
    ]


def test_equipment_counter_reused_with_other_content_is_replayed_counter(world: World) -> None:
    world.results(advert_item(1, equipment(5, battery_pct=90)))
    assert world.results(advert_item(2, equipment(5, battery_pct=40)))[0]["reason"] == (
        "replayed_counter"
    )


def test_advert_with_bad_mac_and_unknown_signer(world: World) -> None:
    forged = equipment(6)[:-1] + bytes((equipment(6)[-1] ^ 1,))
    stranger = encode_equipment_payload(
        key_id=1,
        tag_id=0xE0FF,
        battery_pct=1,
        battery_mv=3300,
        flags=0,
        counter=1,
        company_id=COMPANY_ID,
        key=EQUIPMENT_KEY,
    )
    results = world.results(advert_item(1, forged), advert_item(2, stranger))
    assert [r["reason"] for r in results] == ["bad_mac", "unknown_device"]


def test_every_invalid_vector_advert_gets_its_reason(world: World) -> None:
    cases: list[dict[str, Any]] = load_vectors("invalid.json")["adverts"]
    items = [
        advert_item(n, bytes.fromhex(case["hex"]), company_id=case.get("company_id", COMPANY_ID))
        for n, case in enumerate(cases, 1)
    ]
    results = world.results(*items)
    # The cloud looks the signer up before checking the MAC; for vectors whose signer
    # is registered under the vector's key, the reason is the vector's own.
    expected = [case["error"] for case in cases]
    assert [r["status"] for r in results] == ["rejected"] * len(cases)
    assert [r["reason"] for r in results] == expected


def test_gateway_observation_is_stored_once(world: World) -> None:
    evicted = {
        "kind": "evicted",
        "first_gw_seq": 3,
        "last_gw_seq": 9,
        "count": 7,
        "reason": "disk_budget",
    }
    first = world.results(observation_item(19, evicted))
    again = world.results(observation_item(19, evicted))
    changed = world.results(observation_item(19, evicted | {"count": 8}))
    assert [(r[0]["status"], r[0]["key"], r[0]["reason"]) for r in (first, again, changed)] == [
        ("accepted", "gw:gw-test-1:19", None),
        ("duplicate", "gw:gw-test-1:19", None),
        ("rejected", "gw:gw-test-1:19", "seq_conflict"),
    ]
    assert world.rows("SELECT kind FROM gateway_observations")[0][0] == "evicted"


def test_observation_with_an_odd_kind_is_kept_under_unknown(world: World) -> None:
    odd = {"kind": "x" * 51 + "\u0000"}
    assert (
        world.results(observation_item(1, odd), observation_item(2, {"kind": 7}))[1]["status"]
        == "accepted"
    )
    kinds = world.rows("SELECT kind FROM gateway_observations ORDER BY gw_seq")
    assert [r[0] for r in kinds] == ["unknown", "unknown"]
