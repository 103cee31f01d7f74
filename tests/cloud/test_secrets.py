"""Secrets at rest: device/tag keys encrypted under the server key, API keys hashed."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cloudtest import (
    BEACON_KEY,
    DEVICE_KEY,
    EQUIPMENT_KEY,
    PRESENCE_KEY,
    SERVER_KEY,
    TAG2_FILE_KEY,
    TAG2_META_KEY,
    ZERO_KEY,
    World,
)
from pydantic import ValidationError

from cloud_api.crypto_store import SecretBox, SecretStoreError
from cloud_api.db import session_scope
from cloud_api.provisioning import ProvisioningError, create_site, register_wearable
from cloud_api.settings import Settings


def test_device_and_tag_keys_are_not_stored_in_clear(world: World) -> None:
    device_blobs = [r[0] for r in world.rows("SELECT key_enc FROM device_keys")]
    tag_blobs = [
        blob
        for row in world.rows("SELECT meta_read_key_enc, file_read_key_enc FROM nfc_tags")
        for blob in row
        if blob is not None
    ]
    assert len(device_blobs) == 4  # wearable, presence, beacon, equipment tag
    assert len(tag_blobs) == 4  # two NTAG 424 tags x two keys
    for blob in device_blobs + tag_blobs:
        for key in (
            DEVICE_KEY,
            PRESENCE_KEY,
            BEACON_KEY,
            EQUIPMENT_KEY,
            TAG2_META_KEY,
            TAG2_FILE_KEY,
            ZERO_KEY,
        ):
            assert key not in blob
            assert key.hex().encode() not in blob
    # and they decrypt to the keys under the server key
    box = SecretBox(SERVER_KEY)
    assert box.decrypt(device_blobs[0], context=b"device:wearable:0000a001:1") == DEVICE_KEY


def test_gateway_api_key_is_stored_as_sha256_only(world: World) -> None:
    stored = world.scalar("SELECT api_key_sha256 FROM gateways WHERE gateway_id = 'gw-test-1'")
    assert stored == hashlib.sha256(world.api_key.encode()).hexdigest()
    dump = [str(v) for row in world.rows("SELECT * FROM gateways") for v in row]
    assert not any(world.api_key in value for value in dump)
    assert world.api_key.startswith("pgw_") and len(world.api_key) == 4 + 43


def test_secret_box_binds_the_context_and_the_server_key() -> None:
    box = SecretBox(SERVER_KEY)
    blob = box.encrypt(DEVICE_KEY, context=b"device:wearable:0000a001:1")
    assert blob != box.encrypt(DEVICE_KEY, context=b"device:wearable:0000a001:1")  # fresh nonce
    assert len(blob) == 1 + 12 + 32 + 16
    with pytest.raises(SecretStoreError):
        box.decrypt(blob, context=b"device:wearable:0000a002:1")
    with pytest.raises(SecretStoreError):
        SecretBox(bytes(32)).decrypt(blob, context=b"device:wearable:0000a001:1")
    assert "hidden" in repr(box) and SERVER_KEY.hex() not in repr(box)


@pytest.mark.parametrize(
    "server_key",
    [base64.b64encode(bytes(16)).decode(), "not base64 at all!", ""],
    ids=["16_bytes", "not_base64", "empty"],
)
def test_settings_refuse_a_bad_server_key(server_key: str) -> None:
    with pytest.raises(ValidationError, match="server_key"):
        Settings(server_key=server_key)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    urlsafe = base64.urlsafe_b64encode(bytes(range(255, 223, -1))).decode()
    monkeypatch.setenv("PATROL_CLOUD_SERVER_KEY", urlsafe)
    monkeypatch.setenv("PATROL_CLOUD_CLOCK_SKEW_TOLERANCE_S", "42")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.server_key_bytes() == bytes(range(255, 223, -1))
    assert settings.clock_skew_tolerance_s == 42
    assert settings.database_url == "sqlite:///./patrol-cloud.db"
    assert "255" not in repr(settings) and urlsafe not in repr(settings)


def test_provisioning_refuses_wrong_key_lengths(world: World) -> None:
    box = SecretBox(SERVER_KEY)
    with session_scope(world.engine) as s:
        site = create_site(s, name="Elsewhere")
        with pytest.raises(ProvisioningError, match="32 bytes"):
            register_wearable(s, box=box, device_id=0xA00F, key=bytes(16), site=site)
        with pytest.raises(ProvisioningError, match="unsigned 32-bit"):
            register_wearable(s, box=box, device_id=2**32, key=bytes(32), site=site)
