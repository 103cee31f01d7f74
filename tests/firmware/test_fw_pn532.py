"""The PN532 driver against the simulated PN532 (byte-exact frames over simulated I2C).

Runs in the real MicroPython Unix port; the frames asserted here are the ones
tests/vectors/pn532_frames.json records from the PN532 user manual.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import upy

pytestmark = pytest.mark.micropython

PN532 = {v["name"]: v["frame_hex"] for v in upy.load_vectors("pn532_frames.json")["frames"]}
SUN_URL = "https://patrol.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"


def _scenario(micropython: Path, tmp_path: Path, name: str) -> dict[str, dict[str, object]]:
    return upy.results_by_key(upy.run(micropython, "pn532_sim.py", name, str(tmp_path / "flash")))


def test_host_frames_match_the_manual(micropython: Path, tmp_path: Path) -> None:
    got = _scenario(micropython, tmp_path, "transcript")
    assert got["version"]["written"] == [PN532["get_firmware_version_command"]]
    assert got["version"]["version"] == [0x32, 0x01, 0x06, 0x07]
    assert got["sam"]["written"] == [PN532["sam_configuration_normal_mode_command"]]
    assert got["no_target"] == {
        "key": "no_target",
        "target": True,
        "written": [PN532["in_list_passive_target_106_type_a_command"]],
    }


def test_ntag424_ndef_read_and_sun_parameters(micropython: Path, tmp_path: Path) -> None:
    got = _scenario(micropython, tmp_path, "ntag424")["ntag424"]
    assert got["uid"] == "04de5f1eacc040"
    assert (got["sens_res"], got["sel_res"], got["iso_dep"]) == (0x0344, 0x20, True)
    assert got["uri"] == SUN_URL
    assert got["picc_enc"] == "ef963ff7828658a599f3041510671e88"
    assert got["sdmmac"] == "94eed9ee65337086"
    # InDataExchange (D4 40 01 ...) carrying: ISO SELECT of D2760000850101, SELECT E104,
    # READ BINARY of NLEN, then the message in two chunks (48 + 27 bytes).
    assert got["apdus"] == [
        "0000ff10f0d4400100a4040c07d2760000850101006100",
        "0000ff0bf5d4400100a4000c02e104005400",
        "0000ff08f8d4400100b00000023900",
        "0000ff08f8d4400100b00002300900",
        "0000ff08f8d4400100b000321bee00",
    ]
    assert got["exchanges"] == 5


def test_ntag21x_page_reads(micropython: Path, tmp_path: Path) -> None:
    got = _scenario(micropython, tmp_path, "ntag21x")["ntag21x"]
    assert got == {
        "key": "ntag21x",
        "uid": "04112233445566",
        "iso_dep": False,
        "uri": "https://patrol.example/checkpoint/" + "x" * 60,
        "reads": 6,  # TLV 03 len + 84-byte message from page 4: six 16-byte READs
    }


def test_checksum_errors_nack_and_timeouts(micropython: Path, tmp_path: Path) -> None:
    got = _scenario(micropython, tmp_path, "faults")
    # One corrupted DCS: the driver sends NACK and gets the response again.
    assert got["corrupt_once"]["version"] == [0x32, 0x01, 0x06, 0x07]
    assert got["corrupt_once"]["nacks"] == 1
    assert got["corrupt_once"]["written"] == [
        PN532["get_firmware_version_command"],
        PN532["nack"],
    ]
    # Corrupted every time: two NACK retries, then a frame error (3 NACKs in total).
    assert (got["corrupt_always"]["error"], got["corrupt_always"]["nacks"]) == (
        "Pn532FrameError",
        3,
    )
    # No ACK: times out after the 30 ms ACK timeout of simulated time.
    assert (got["no_ack"]["error"], got["no_ack"]["waited_ms"]) == ("Pn532Timeout", 30)
    # ACK but no response: times out after 500 ms and aborts the command with an ACK.
    assert got["no_response"]["error"] == "Pn532Timeout"
    assert got["no_response"]["waited_ms"] == 500
    assert got["no_response"]["written"] == [PN532["get_firmware_version_command"], PN532["ack"]]
    assert got["recovers"]["version"] == [0x32, 0x01, 0x06, 0x07]
    assert got["busy_then_ready"]["version"] == [0x32, 0x01, 0x06, 0x07]
    # An unknown command gets the manual's error frame.
    assert got["unknown_command"]["error"] == "Pn532CommandError"


def test_tag_removed_mid_read(micropython: Path, tmp_path: Path) -> None:
    got = _scenario(micropython, tmp_path, "removed")
    assert got["removed_mid_read"] == {
        "key": "removed_mid_read",
        "error": "TagError",
        "exchanges": 2,
    }
    assert got["after_removal"]["target"] is True
