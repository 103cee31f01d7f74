"""Provisioning functions on SQLite and PostgreSQL: keys, hashes, rotation, revocation, audit.

Published vector: NXP AN10922 section 2.2.1 (AES-128 key diversification), master
key 00112233445566778899AABBCCDDEEFF, M = UID 04782E21801D80 || AID 3042F5 ||
system identifier "NXP Abu" (4E585020416275), diversified key
A8DD63A3B89D54B37CA802473FDA9175.
"""

from __future__ import annotations

import base64
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cloudtest import SERVER_KEY, SERVER_NOW, World
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.audit import Actor
from cloud_api.crypto_store import (
    SecretBox,
    an10922_diversify_aes128,
    mosquitto_password_hash,
    mosquitto_password_matches,
)
from cloud_api.db import session_scope
from cloud_api.models import (
    AuditLog,
    DeviceKey,
    DeviceKind,
    EquipmentAssignment,
    EquipmentKind,
    MqttCredential,
    NfcTag,
    Site,
    WearableAssignment,
)
from cloud_api.provisioning import (
    KeySource,
    ProvisioningError,
    assign_equipment,
    assign_wearable,
    create_equipment_item,
    create_guard,
    diversification_input,
    find_device,
    mosquitto_files,
    provision_gateway,
    provision_ntag424,
    provision_wearable,
    register_equipment_tag,
    return_equipment,
    revoke_device,
    rotate_device_key,
    rotate_mqtt_password,
    rotate_site_master_key,
    site_master_key,
)
from patrol_protocol.crypto import aes_cmac

AN10922_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
AN10922_M = bytes.fromhex("04782E21801D803042F54E585020416275")
AN10922_KEY = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")
TECH = Actor("tech-anna", "technician", None)


def _site(session: Session, world: World) -> Site:
    del world
    return session.scalars(select(Site).where(Site.name == "Harbour depot")).one()


# ---------------------------------------------------------------- primitives


def test_an10922_published_aes128_example() -> None:
    assert an10922_diversify_aes128(AN10922_MASTER, AN10922_M) == AN10922_KEY


def test_an10922_equals_cmac_for_long_inputs_and_pads_short_ones_to_32_bytes() -> None:
    # For |0x01 || M| > 16 the AN10922 procedure is exactly AES-CMAC (RFC 4493, tested
    # in tests/protocol); for shorter M it still pads to two blocks, so it differs.
    for m in (AN10922_M, bytes(range(16)), bytes(range(31))):
        assert an10922_diversify_aes128(AN10922_MASTER, m) == aes_cmac(AN10922_MASTER, b"\x01" + m)
    short = bytes.fromhex("04782E21801D80")
    assert an10922_diversify_aes128(AN10922_MASTER, short) != aes_cmac(
        AN10922_MASTER, b"\x01" + short
    )
    with pytest.raises(ValueError, match=r"1\.\.31 bytes"):
        an10922_diversify_aes128(AN10922_MASTER, bytes(32))
    with pytest.raises(ValueError, match="16 bytes"):
        an10922_diversify_aes128(bytes(15), AN10922_M)


def test_mosquitto_hash_format_and_a_line_written_by_mosquitto_passwd(tmp_path: Path) -> None:
    salt = bytes(range(12))
    line = mosquitto_password_hash("correct horse", salt=salt)
    prefix, salt_b64, hash_b64 = line.rsplit("$", 2)
    assert prefix == "$7$101"
    assert base64.b64decode(salt_b64) == salt and len(base64.b64decode(hash_b64)) == 64
    assert mosquitto_password_matches("correct horse", line)
    assert not mosquitto_password_matches("correct horsE", line)
    assert not mosquitto_password_matches("correct horse", "$6$abc$def")
    # The other direction: mosquitto_passwd (the broker's own tool) hashes, we verify.
    path = tmp_path / "passwd"
    path.write_text("0000a001:s3cret-from-the-tool\n", encoding="utf-8")
    subprocess.run(
        ["mosquitto_passwd", "-U", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        start_new_session=True,
    )
    user, stored = path.read_text(encoding="utf-8").strip().split(":", 1)
    assert user == "0000a001" and stored.startswith("$7$101$")
    assert mosquitto_password_matches("s3cret-from-the-tool", stored)
    assert not mosquitto_password_matches("s3cret-from-the-tooL", stored)


# ---------------------------------------------------------------- store


def test_wearable_secrets_stored_encrypted_or_hashed_and_audited(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(world.engine) as s:
        made = provision_wearable(
            s, box=box, device_id=0x0000B001, site=_site(s, world), label="W-1", actor=TECH
        )
    assert (made.key_id, len(made.key), len(made.presence_key)) == (1, 32, 16)
    assert made.mqtt_username == "0000b001" and len(made.mqtt_password) == 22
    with session_scope(world.engine) as s:
        cred = s.scalars(select(MqttCredential).where(MqttCredential.username == "0000b001")).one()
        assert cred.password_hash.startswith("$7$101$")
        assert mosquitto_password_matches(made.mqtt_password, cred.password_hash)
        actions = s.execute(
            select(AuditLog.action, AuditLog.object_id, AuditLog.actor, AuditLog.actor_role)
            .where(AuditLog.actor == "tech-anna")
            .order_by(AuditLog.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("wearable.register", "0000b001", "tech-anna", "technician"),
        ("presence.register", "0000b001", "tech-anna", "technician"),
        ("mqtt.create", "0000b001", "tech-anna", "technician"),
    ]
    # No secret anywhere in clear: not in key rows, not in the audit log.
    dump = b"".join(
        bytes(str(v), "utf-8") if not isinstance(v, bytes) else v
        for table in ("device_keys", "mqtt_credentials", "audit_log")
        for row in world.rows(f"SELECT * FROM {table}")
        for v in row
    )
    for secret in (made.key, made.presence_key):
        assert secret not in dump and secret.hex().encode() not in dump
        assert base64.b64encode(secret) not in dump
    assert made.mqtt_password.encode() not in dump


def test_audit_refuses_secret_looking_details(world: World) -> None:
    from cloud_api import audit

    with session_scope(world.engine) as s, pytest.raises(ValueError, match="looks like a secret"):
        audit.record(s, TECH, "x", "y", 1, detail={"api_key": "pgw_..."})


def test_rotation_retires_old_keys_after_the_overlap(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(world.engine) as s:
        device = find_device(s, DeviceKind.WEARABLE, 0x0000A001)
        key_id, key = rotate_device_key(
            s, box=box, device=device, now=SERVER_NOW, overlap_s=3600, actor=TECH
        )
        assert (key_id, len(key)) == (2, 32)
        assert s.scalars(
            select(DeviceKey.retired_at)
            .where(DeviceKey.device_pk == device.id)
            .order_by(DeviceKey.key_id)
        ).all() == [SERVER_NOW + timedelta(hours=1), None]
        key_id3, _ = rotate_device_key(s, box=box, device=device, now=SERVER_NOW, actor=TECH)
        assert key_id3 == 3
        rows = s.execute(
            select(DeviceKey.key_id, DeviceKey.retired_at)
            .where(DeviceKey.device_pk == device.id)
            .order_by(DeviceKey.key_id)
        ).all()
    # The first rotation gave key 1 an hour; the second (overlap 0, say a suspected leak)
    # retires key 2 at once and cuts key 1's remaining hour too.
    assert [(r.key_id, r.retired_at) for r in rows] == [
        (1, SERVER_NOW),
        (2, SERVER_NOW),
        (3, None),
    ]
    with session_scope(world.engine) as s, pytest.raises(ProvisioningError, match="overlap_s"):
        rotate_device_key(
            s,
            box=box,
            device=find_device(s, DeviceKind.WEARABLE, 0x0000A001),
            now=SERVER_NOW,
            overlap_s=-1,
        )


def test_revoked_wearable_loses_keys_and_broker_account(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(world.engine) as s:
        site = _site(s, world)
        gw = provision_gateway(s, gateway_id="gw-store-1", site=site, actor=TECH)
        made = provision_wearable(s, box=box, device_id=0x0000B002, site=site, actor=TECH)
        passwords_before, acl = mosquitto_files(s, site.id)
    assert [line.split(":")[0] for line in passwords_before.splitlines()] == [
        "0000b002",
        "gw-store-1",
    ]
    assert acl.splitlines()[1:] == [
        "user gw-store-1",
        "topic readwrite patrol/v1/#",
        "",
        "pattern write patrol/v1/dev/%u/up",
        "pattern write patrol/v1/dev/%u/status",
        "pattern read patrol/v1/dev/%u/ack",
        "pattern read patrol/v1/dev/%u/cmd",
    ]
    with session_scope(world.engine) as s:
        device = find_device(s, DeviceKind.WEARABLE, made.device.device_id)
        revoke_device(s, device=device, reason="lost on patrol", now=SERVER_NOW, actor=TECH)
        passwords_after, _ = mosquitto_files(s, device.site_id or 0)
        presence = find_device(s, DeviceKind.PRESENCE, made.device.device_id)
        keys = s.scalars(
            select(DeviceKey.retired_at).where(DeviceKey.device_pk.in_([device.id, presence.id]))
        ).all()
        assert (device.revoked_reason, presence.revoked_at) == ("lost on patrol", SERVER_NOW)
    assert keys == [SERVER_NOW, SERVER_NOW]
    assert [line.split(":")[0] for line in passwords_after.splitlines()] == ["gw-store-1"]
    assert gw.mqtt_username == "gw-store-1"
    with session_scope(world.engine) as s, pytest.raises(ProvisioningError, match="revoked"):
        rotate_mqtt_password(s, username="0000b002")


def test_mqtt_password_rotation_replaces_the_hash(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(world.engine) as s:
        made = provision_wearable(s, box=box, device_id=0x0000B003, site=_site(s, world))
        new = rotate_mqtt_password(s, username="0000b003", now=SERVER_NOW)
        stored = s.scalars(
            select(MqttCredential.password_hash).where(MqttCredential.username == "0000b003")
        ).one()
    assert new != made.mqtt_password
    assert mosquitto_password_matches(new, stored)
    assert not mosquitto_password_matches(made.mqtt_password, stored)


def test_diversified_tag_keys_follow_an10922_from_the_site_master_key(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    uid_a, uid_b = bytes.fromhex("04aa000000000a"), bytes.fromhex("04aa000000000b")
    with session_scope(world.engine) as s:
        site = _site(s, world)
        tag_a, meta_a, file_a = provision_ntag424(
            s, box=box, site=site, uid=uid_a, source=KeySource.DIVERSIFIED
        )
        version, master = site_master_key(s, box=box, site=site)
        _tag_b, meta_b, _ = provision_ntag424(
            s, box=box, site=site, uid=uid_b, source=KeySource.DIVERSIFIED
        )
        site_id = site.id
        assert (tag_a.key_source, tag_a.master_key_version, version) == ("diversified", 1, 1)
    assert diversification_input(uid_a, 1, site_id) == (
        uid_a + b"\x01" + site_id.to_bytes(4, "big") + b"patrol"
    )
    assert meta_a == an10922_diversify_aes128(master, diversification_input(uid_a, 1, site_id))
    assert file_a == an10922_diversify_aes128(master, diversification_input(uid_a, 2, site_id))
    assert len({meta_a, file_a, meta_b}) == 3
    with session_scope(world.engine) as s:
        site = _site(s, world)
        new_version, new_master = rotate_site_master_key(s, box=box, site=site, now=SERVER_NOW)
        assert (new_version, site_master_key(s, box=box, site=site)) == (2, (2, new_master))
        stored = s.scalars(select(NfcTag).where(NfcTag.uid == uid_a)).one()
        # the tag keeps the keys it was written with until it is rotated
        assert (
            box.decrypt(
                stored.meta_read_key_enc or b"",
                context=b"ntag424:" + uid_a.hex().encode() + b":meta",
            )
            == meta_a
        )


def test_equipment_and_wearable_assignments_close_the_previous_one(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    t1, t2 = SERVER_NOW, SERVER_NOW + timedelta(hours=8)
    with session_scope(world.engine) as s:
        site = _site(s, world)
        anna = create_guard(s, site=site, name="Anna", employee_no="E-1")
        ben = create_guard(s, site=site, name="Ben", employee_no="E-2")
        tag = register_equipment_tag(s, box=box, tag_id=0xE0E1, key=bytes(16), site=site)
        radio = create_equipment_item(
            s, site=site, kind=EquipmentKind.RADIO, label="Radio 7", tag=tag
        )
        assign_equipment(s, item=radio, guard=anna, at=t1)
        assign_equipment(s, item=radio, guard=ben, at=t2)
        assert return_equipment(s, item=radio, at=t2 + timedelta(hours=8)) is True
        assert return_equipment(s, item=radio, at=t2 + timedelta(hours=9)) is False
        wearable = find_device(s, DeviceKind.WEARABLE, 0x0000A001)
        assign_wearable(s, guard=anna, device=wearable, at=t1)
        assign_wearable(s, guard=ben, device=wearable, at=t2)
        rows = s.execute(
            select(
                EquipmentAssignment.guard_id,
                EquipmentAssignment.assigned_at,
                EquipmentAssignment.returned_at,
            ).order_by(EquipmentAssignment.id)
        ).all()
        worn = s.execute(
            select(
                WearableAssignment.guard_id,
                WearableAssignment.started_at,
                WearableAssignment.ended_at,
            ).order_by(WearableAssignment.id)
        ).all()
        ids = (anna.id, ben.id)
        with pytest.raises(ProvisioningError, match="equipment tag"):
            create_equipment_item(s, site=site, kind=EquipmentKind.BATON, label="B", tag=wearable)
    assert [tuple(r) for r in rows] == [
        (ids[0], t1, t2),
        (ids[1], t2, t2 + timedelta(hours=8)),
    ]
    assert [tuple(r) for r in worn] == [(ids[0], t1, t2), (ids[1], t2, None)]
