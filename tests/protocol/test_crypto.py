"""Published vectors prove the MAC primitives byte for byte."""

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from patrol_protocol.crypto import aes_cmac, constant_time_equal, hmac_sha256
from patrol_protocol.errors import MalformedError

from .vectors import load

RFC4231 = load("rfc4231_hmac_sha256.json")
RFC4493 = load("rfc4493_aes_cmac.json")


@pytest.mark.parametrize("case", RFC4231["vectors"], ids=lambda c: c["name"])
def test_hmac_sha256_rfc4231(case):
    mac = hmac_sha256(bytes.fromhex(case["key"]), bytes.fromhex(case["data"]))
    assert len(mac) == 32
    assert mac[: case["output_bytes"]] == bytes.fromhex(case["expected"])


def test_rfc4231_file_covers_cases_1_to_7_with_truncated_case_5():
    names = [c["name"] for c in RFC4231["vectors"]]
    assert len(names) == 7
    assert RFC4231["vectors"][4]["output_bytes"] == 16
    assert RFC4231["vectors"][4]["expected"] == "a3b6167473100ee06e0c796c2955552b"


@pytest.mark.parametrize("case", RFC4493["vectors"], ids=lambda c: c["name"])
def test_aes_cmac_rfc4493(case):
    message = bytes.fromhex(case["message"])
    assert len(message) == case["length"]
    assert aes_cmac(bytes.fromhex(RFC4493["key"]), message) == bytes.fromhex(case["expected"])


def _double(block: bytes) -> bytes:
    """GF(2^128) doubling of RFC 4493 section 2.3 (subkey generation)."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def test_rfc4493_subkeys():
    key = bytes.fromhex(RFC4493["key"])
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    l_block = encryptor.update(bytes(16)) + encryptor.finalize()
    assert l_block == bytes.fromhex(RFC4493["subkeys"]["l"])
    assert _double(l_block) == bytes.fromhex(RFC4493["subkeys"]["k1"])
    assert _double(_double(l_block)) == bytes.fromhex(RFC4493["subkeys"]["k2"])


def test_rfc4493_lengths_are_0_16_40_64():
    assert [c["length"] for c in RFC4493["vectors"]] == [0, 16, 40, 64]


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_aes_cmac_refuses_non_aes128_keys(length):
    with pytest.raises(MalformedError, match="AES-CMAC key must be 16 bytes"):
        aes_cmac(bytes(length), b"")


def test_constant_time_equal():
    assert constant_time_equal(b"\x01\x02", b"\x01\x02")
    assert not constant_time_equal(b"\x01\x02", b"\x01\x03")
    assert not constant_time_equal(b"\x01\x02", b"\x01")
    assert constant_time_equal(b"", b"")
