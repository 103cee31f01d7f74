"""NTAG 424 DNA SUN (AN12196): decryption, session key, SDMMAC, verification."""

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from patrol_protocol.crypto import aes_cmac
from patrol_protocol.errors import MalformedError, SignatureError, SunMacError
from patrol_protocol.sun import (
    SV2_PREFIX,
    PiccData,
    decrypt_picc_data,
    sdmmac,
    session_mac_key,
    verify_sun,
)

from .vectors import load

AN12196 = load("an12196_sun.json")["vectors"]
PAGE12 = AN12196[0]
ZERO_KEY = bytes(16)


def _b(case, field):
    return bytes.fromhex(case[field])


@pytest.mark.parametrize("case", AN12196, ids=lambda c: c["name"])
def test_decrypt_picc_data(case):
    picc = decrypt_picc_data(_b(case, "meta_read_key"), _b(case, "picc_enc"))
    assert picc == PiccData(uid=_b(case, "uid"), read_counter=case["read_counter"])
    assert case["read_counter"].to_bytes(3, "little") == _b(case, "read_counter_bytes")


@pytest.mark.parametrize("case", AN12196, ids=lambda c: c["name"])
def test_sv2_and_session_mac_key(case):
    sv2 = _b(case, "sv2")
    assert sv2 == SV2_PREFIX + _b(case, "uid") + _b(case, "read_counter_bytes")
    expected = _b(case, "session_mac_key")
    assert aes_cmac(_b(case, "file_read_key"), sv2) == expected
    assert session_mac_key(_b(case, "file_read_key"), _b(case, "uid"), case["read_counter"]) == (
        expected
    )


@pytest.mark.parametrize("case", AN12196, ids=lambda c: c["name"])
def test_sdmmac(case):
    mac = sdmmac(
        _b(case, "file_read_key"), _b(case, "uid"), case["read_counter"], _b(case, "mac_input")
    )
    assert mac == _b(case, "sdmmac")
    if case["full_cmac"] is not None:
        full = aes_cmac(_b(case, "session_mac_key"), _b(case, "mac_input"))
        assert full == _b(case, "full_cmac")
        assert full[1::2] == mac


def test_page12_plaintext_picc_data():
    """The raw decryption matches the app note's PICCData, padding included."""
    decryptor = Cipher(algorithms.AES(ZERO_KEY), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(_b(PAGE12, "picc_enc")) + decryptor.finalize()
    assert plain == _b(PAGE12, "picc_data")
    assert plain[:1] == _b(PAGE12, "picc_data_tag")


def test_verify_sun_page12():
    picc = verify_sun(
        meta_read_key=ZERO_KEY,
        file_read_key=ZERO_KEY,
        picc_enc=_b(PAGE12, "picc_enc"),
        sdmmac=_b(PAGE12, "sdmmac"),
    )
    assert picc.uid == bytes.fromhex("04de5f1eacc040")
    assert picc.read_counter == 61


@pytest.mark.parametrize("index", range(8))
def test_verify_sun_rejects_any_flipped_sdmmac_byte(index):
    mac = bytearray(_b(PAGE12, "sdmmac"))
    mac[index] ^= 0x80
    with pytest.raises(SunMacError, match="SDMMAC does not verify") as err:
        verify_sun(
            meta_read_key=ZERO_KEY,
            file_read_key=ZERO_KEY,
            picc_enc=_b(PAGE12, "picc_enc"),
            sdmmac=bytes(mac),
        )
    assert err.value.reason == "bad_sun_mac"
    assert isinstance(err.value, SignatureError)


def test_verify_sun_wrong_file_key_is_bad_sun_mac():
    with pytest.raises(SunMacError):
        verify_sun(
            meta_read_key=ZERO_KEY,
            file_read_key=bytes(range(16)),
            picc_enc=_b(PAGE12, "picc_enc"),
            sdmmac=_b(PAGE12, "sdmmac"),
        )


def test_wrong_meta_key_gives_bad_picc_data_tag():
    with pytest.raises(MalformedError, match="PICCDataTag=0x") as err:
        decrypt_picc_data(bytes(range(16)), _b(PAGE12, "picc_enc"))
    assert err.value.reason == "malformed"


def test_sdmmac_with_empty_mac_input_is_the_default():
    uid, counter = _b(PAGE12, "uid"), PAGE12["read_counter"]
    assert sdmmac(ZERO_KEY, uid, counter) == sdmmac(ZERO_KEY, uid, counter, b"")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"picc_enc": bytes(15)}, "picc_enc must be 16 bytes"),
        ({"sdmmac": bytes(7)}, "sdmmac must be 8 bytes"),
        ({"meta_read_key": bytes(32)}, "meta_read_key must be 16 bytes"),
        ({"file_read_key": bytes(8)}, "file_read_key must be 16 bytes"),
    ],
)
def test_verify_sun_checks_lengths(kwargs, match):
    args = {
        "meta_read_key": ZERO_KEY,
        "file_read_key": ZERO_KEY,
        "picc_enc": _b(PAGE12, "picc_enc"),
        "sdmmac": _b(PAGE12, "sdmmac"),
    }
    with pytest.raises(MalformedError, match=match):
        verify_sun(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("uid", "counter", "match"),
    [
        (bytes(4), 1, "uid must be 7 bytes"),
        (bytes(7), -1, "read_counter=-1 out of range"),
        (bytes(7), 1 << 24, "read_counter=16777216 out of range"),
    ],
)
def test_session_key_inputs_are_checked(uid, counter, match):
    with pytest.raises(MalformedError, match=match):
        session_mac_key(ZERO_KEY, uid, counter)
    with pytest.raises(MalformedError, match=match):
        PiccData(uid=uid, read_counter=counter)
