"""NFC checkpoint scans: NTAG 424 DNA SUN (AN12196 vector) and plain NTAG21x tags."""

from __future__ import annotations

from typing import Any

from cloudtest import (
    AN12196_COUNTER,
    AN12196_PICC_ENC,
    AN12196_SDMMAC,
    AN12196_UID,
    NTAG21X_UID,
    T0,
    TAG2_FILE_KEY,
    TAG2_META_KEY,
    TAG2_UID,
    UNKNOWN_UID,
    World,
    frame_item,
    make_frame,
    make_sun,
)

from patrol_protocol.frames import TAG_NTAG21X, TAG_NTAG424_SUN, NfcScan


def sun_scan(seq: int, *, uid: bytes, picc_enc: bytes, mac: bytes) -> dict[str, Any]:
    body = NfcScan(tag_type=TAG_NTAG424_SUN, uid=uid, picc_enc=picc_enc, sdmmac=mac)
    return frame_item(seq, make_frame(body, seq=seq))


def an12196_scan(seq: int, *, mac: bytes = AN12196_SDMMAC) -> dict[str, Any]:
    return sun_scan(seq, uid=AN12196_UID, picc_enc=AN12196_PICC_ENC, mac=mac)


def tag2_scan(seq: int, counter: int) -> dict[str, Any]:
    picc_enc, mac = make_sun(TAG2_META_KEY, TAG2_FILE_KEY, TAG2_UID, counter)
    return sun_scan(seq, uid=TAG2_UID, picc_enc=picc_enc, mac=mac)


def test_an12196_sun_is_accepted_with_high_assurance(world: World) -> None:
    assert world.results(an12196_scan(1)) == [
        {"gw_seq": 1, "status": "accepted", "key": "0000a001:1", "reason": None}
    ]
    [event] = world.events()
    assert (event.assurance, event.flags, event.sun_read_counter, event.checkpoint_id) == (
        "high",
        [],
        AN12196_COUNTER,
        world.checkpoint_ids["sun"],
    )
    assert event.body["uid"] == "04de5f1eacc040"
    assert event.body["sun_read_counter"] == 61
    assert (
        world.scalar("SELECT last_read_counter FROM nfc_tags WHERE uid = :u", u=AN12196_UID) == 61
    )


def test_same_sun_again_is_a_replayed_counter(world: World) -> None:
    world.results(an12196_scan(1))
    assert world.results(an12196_scan(2)) == [
        {"gw_seq": 2, "status": "rejected", "key": "0000a001:2", "reason": "replayed_counter"}
    ]
    assert world.scalar("SELECT count(*) FROM events") == 1
    assert world.scalar("SELECT reason FROM rejected_events") == "replayed_counter"


def test_replayed_counter_inside_one_batch(world: World) -> None:
    results = world.results(an12196_scan(1), an12196_scan(2))
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("rejected", "replayed_counter"),
    ]


def test_retried_sun_frame_is_a_duplicate_not_a_replay(world: World) -> None:
    world.results(an12196_scan(1))
    assert world.results(an12196_scan(1))[0]["status"] == "duplicate"


def test_wrong_sun_mac_is_bad_sun_mac(world: World) -> None:
    wrong = bytes((AN12196_SDMMAC[0] ^ 0x80,)) + AN12196_SDMMAC[1:]
    assert world.results(an12196_scan(1, mac=wrong)) == [
        {"gw_seq": 1, "status": "rejected", "key": "0000a001:1", "reason": "bad_sun_mac"}
    ]
    assert world.scalar("SELECT count(*) FROM events") == 0


def test_sun_from_another_tag_under_this_uid_is_bad_sun_mac(world: World) -> None:
    # The AN12196 PICCData (uid 04de5f1eacc040) presented under tag 2's uid: wrong keys.
    item = sun_scan(1, uid=TAG2_UID, picc_enc=AN12196_PICC_ENC, mac=AN12196_SDMMAC)
    assert world.results(item)[0]["reason"] == "bad_sun_mac"


def test_picc_uid_must_match_the_anticollision_uid(world: World) -> None:
    # Tag 2's keys registered, but a SUN built for a different uid with those keys.
    picc_enc, mac = make_sun(TAG2_META_KEY, TAG2_FILE_KEY, bytes.fromhex("04000000000001"), 5)
    item = sun_scan(1, uid=TAG2_UID, picc_enc=picc_enc, mac=mac)
    assert world.results(item)[0]["reason"] == "bad_sun_mac"
    assert "differs from the anticollision uid" in world.scalar(
        "SELECT detail FROM rejected_events"
    )


def test_counters_out_of_order_and_far_ahead_are_flagged_not_rejected(world: World) -> None:
    results = world.results(tag2_scan(1, 10), tag2_scan(2, 8), tag2_scan(3, 5000))
    assert [r["status"] for r in results] == ["accepted", "accepted", "accepted"]
    assert [(e.sun_read_counter, e.flags) for e in world.events()] == [
        (10, []),
        (8, ["sun_counter_out_of_order"]),
        (5000, ["sun_counter_jump"]),
    ]
    assert world.scalar("SELECT last_read_counter FROM nfc_tags WHERE uid = :u", u=TAG2_UID) == 5000


def test_ntag21x_is_accepted_with_low_assurance(world: World) -> None:
    body = NfcScan(tag_type=TAG_NTAG21X, uid=NTAG21X_UID)
    assert world.results(frame_item(1, make_frame(body, seq=1)))[0]["status"] == "accepted"
    [event] = world.events()
    assert (event.assurance, event.flags, event.checkpoint_id, event.sun_read_counter) == (
        "low",
        ["low_assurance_tag"],
        world.checkpoint_ids["plain"],
        None,
    )


def test_ntag21x_can_be_tapped_again(world: World) -> None:
    body = NfcScan(tag_type=TAG_NTAG21X, uid=NTAG21X_UID)
    items = [frame_item(seq, make_frame(body, seq=seq, time_s=T0 + seq)) for seq in (1, 2)]
    assert [r["status"] for r in world.results(*items)] == ["accepted", "accepted"]


def test_ntag424_read_without_sun_is_refused(world: World) -> None:
    body = NfcScan(tag_type=TAG_NTAG21X, uid=AN12196_UID)
    assert world.results(frame_item(1, make_frame(body, seq=1)))[0]["reason"] == "bad_sun_mac"


def test_unknown_tag(world: World) -> None:
    body = NfcScan(tag_type=TAG_NTAG21X, uid=UNKNOWN_UID)
    assert world.results(frame_item(1, make_frame(body, seq=1))) == [
        {"gw_seq": 1, "status": "rejected", "key": "0000a001:1", "reason": "unknown_tag"}
    ]
