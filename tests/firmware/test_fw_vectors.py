"""The firmware passes every shared vector, computed in the real MicroPython Unix port.

One MicroPython run (scripts/vectors.py) computes all vectors; each test below
compares one of its answers with the exact value stored in tests/vectors/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import upy

pytestmark = pytest.mark.micropython

FRAMES = upy.load_vectors("frames.json")["vectors"]
COMMANDS = upy.load_vectors("commands.json")
INVALID = upy.load_vectors("invalid.json")
ADVERTS = upy.load_vectors("adverts.json")["vectors"]
HMAC = upy.load_vectors("rfc4231_hmac_sha256.json")["vectors"]
PN532 = upy.load_vectors("pn532_frames.json")["frames"]


def _names(vectors: list[dict[str, object]]) -> list[str]:
    return [str(v["name"]) for v in vectors]


@pytest.fixture(scope="module")
def computed(micropython: Path) -> dict[str, dict[str, object]]:
    """Every vector as the firmware computes it, keyed "<file>:<name>"."""
    return upy.results_by_key(upy.run(micropython, "vectors.py", str(upy.VECTORS)))


@pytest.mark.parametrize("vector", FRAMES, ids=_names(FRAMES))
def test_event_frame_bytes(
    computed: dict[str, dict[str, object]], vector: dict[str, object]
) -> None:
    got = computed[f"frames:{vector['name']}"]
    assert got["body_hex"] == vector["body_hex"]
    assert got["frame_hex"] == vector["frame_hex"]
    assert got["seq"] == vector["header"]["seq"]  # type: ignore[index]


@pytest.mark.parametrize("vector", COMMANDS["commands"], ids=_names(COMMANDS["commands"]))
def test_command_decodes_verifies_and_reencodes(
    computed: dict[str, dict[str, object]], vector: dict[str, object]
) -> None:
    got = computed[f"commands:{vector['name']}"]
    assert got["header"] == vector["header"]
    assert got["body"] == vector["body"]
    assert got["body_hex"] == vector["body_hex"]
    assert got["reencoded_hex"] == vector["frame_hex"]


@pytest.mark.parametrize("index", range(len(COMMANDS["acks"])))
def test_ack_decodes_and_reencodes(computed: dict[str, dict[str, object]], index: int) -> None:
    vector = COMMANDS["acks"][index]
    got = computed[f"acks:{index}"]
    assert (got["device_id"], got["acked_seq"]) == (vector["device_id"], vector["acked_seq"])
    assert got["frame_hex"] == vector["frame_hex"]


@pytest.mark.parametrize("index", range(len(COMMANDS["status"])))
def test_status_frame_bytes(computed: dict[str, dict[str, object]], index: int) -> None:
    assert computed[f"status:{index}"]["frame_hex"] == COMMANDS["status"][index]["frame_hex"]


@pytest.mark.parametrize("section", ["commands", "acks", "adverts"])
def test_invalid_inputs_rejected_with_same_reason(
    computed: dict[str, dict[str, object]], section: str
) -> None:
    got = {v["name"]: computed[f"invalid_{section}:{v['name']}"]["error"] for v in INVALID[section]}
    assert got == {v["name"]: v["error"] for v in INVALID[section]}


@pytest.mark.parametrize("vector", ADVERTS, ids=_names(ADVERTS))
def test_advert_payload_and_advertisement(
    computed: dict[str, dict[str, object]], vector: dict[str, object]
) -> None:
    got = computed[f"adverts:{vector['name']}"]
    assert got["payload_hex"] == vector["payload_hex"]
    assert got["advertisement_hex"] == vector["advertisement_hex"]
    assert got["parsed_payload_hex"] == vector["payload_hex"]
    fields = vector["fields"]
    signer = fields.get("beacon_id", fields.get("tag_id", fields.get("device_id")))  # type: ignore[union-attr]
    step = fields.get("step", fields.get("counter"))  # type: ignore[union-attr]
    assert (got["signer_id"], got["step"], got["mac_hex"]) == (signer, step, fields["mac_hex"])  # type: ignore[index]


@pytest.mark.parametrize("vector", HMAC, ids=_names(HMAC))
def test_rfc4231_hmac_sha256(
    computed: dict[str, dict[str, object]], vector: dict[str, object]
) -> None:
    assert computed[f"hmac:{vector['name']}"]["expected"] == vector["expected"]


@pytest.mark.parametrize("vector", PN532, ids=_names(PN532))
def test_pn532_manual_frames(
    computed: dict[str, dict[str, object]], vector: dict[str, object]
) -> None:
    got = computed[f"pn532:{vector['name']}"]
    assert got["type"] == vector["type"]
    if vector["type"] == "info":
        assert got["tfi"] == vector["tfi"]
        assert got["data_hex"] == vector["data_hex"]
        assert got["encoded_hex"] == vector["frame_hex"]
