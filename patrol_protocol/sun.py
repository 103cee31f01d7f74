"""NTAG 424 DNA Secure Unique NFC (SUN) verification, per NXP AN12196.

1. ``PICCData = AES-128-CBC-decrypt(SDMMetaReadKey, IV=0, picc_enc)``:
   ``PICCDataTag (1) | UID (7) | SDMReadCtr (3, LSB first) | padding (5)``.
2. ``SV2 = 3C C3 00 01 00 80 | UID | SDMReadCtr``;
   ``KSesSDMFileReadMAC = AES-CMAC(SDMFileReadKey, SV2)`` (RFC 4493).
3. ``SDMMAC`` = bytes 1, 3, ..., 15 of ``AES-CMAC(KSesSDMFileReadMAC, MACInput)``;
   ``MACInput`` is empty when the MAC directly follows the PICCData in the URL.

SUN proves which tag spoke (and its read counter), not when; replay of a
``(tag, counter)`` is the cloud's job.
"""

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from patrol_protocol._checks import check_bytes, check_uint
from patrol_protocol.crypto import AES_KEY_BYTES, aes_cmac, constant_time_equal
from patrol_protocol.errors import MalformedError, SunMacError

PICC_DATA_TAG_UID_CTR_7: Final = 0xC7
"""PICCDataTag: UID mirrored, SDMReadCtr mirrored, UID length 7 (the only one we accept)."""
SUN_UID_BYTES: Final = 7
SUN_PICC_ENC_BYTES: Final = 16
SUN_SDMMAC_BYTES: Final = 8
SV2_PREFIX: Final = bytes.fromhex("3cc300010080")
"""AN12196 session vector prefix for KSesSDMFileReadMAC (label 3CC3, counter 0001, length 0080)."""


@dataclass(frozen=True, slots=True)
class PiccData:
    """Decrypted PICCData: the tag's 7-byte UID and its 24-bit SDM read counter."""

    uid: bytes
    read_counter: int

    def __post_init__(self) -> None:
        check_bytes("uid", self.uid, SUN_UID_BYTES)
        check_uint("read_counter", self.read_counter, 24)


def _check_key(name: str, key: bytes) -> None:
    check_bytes(name, key, AES_KEY_BYTES)


def decrypt_picc_data(meta_read_key: bytes, picc_enc: bytes) -> PiccData:
    """Decrypt ``e=`` (16 bytes) with SDMMetaReadKey; MalformedError unless tag byte is 0xC7."""
    _check_key("meta_read_key", meta_read_key)
    check_bytes("picc_enc", picc_enc, SUN_PICC_ENC_BYTES)
    decryptor = Cipher(algorithms.AES(meta_read_key), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(picc_enc) + decryptor.finalize()
    if plain[0] != PICC_DATA_TAG_UID_CTR_7:
        raise MalformedError(
            f"PICCDataTag=0x{plain[0]:02x}, expected 0x{PICC_DATA_TAG_UID_CTR_7:02x} "
            "(wrong SDMMetaReadKey or not a UID+counter mirror)"
        )
    uid = plain[1 : 1 + SUN_UID_BYTES]
    counter = int.from_bytes(plain[1 + SUN_UID_BYTES : 1 + SUN_UID_BYTES + 3], "little")
    return PiccData(uid=uid, read_counter=counter)


def _sv2(uid: bytes, read_counter: int) -> bytes:
    check_bytes("uid", uid, SUN_UID_BYTES)
    check_uint("read_counter", read_counter, 24)
    return SV2_PREFIX + uid + read_counter.to_bytes(3, "little")


def session_mac_key(file_read_key: bytes, uid: bytes, read_counter: int) -> bytes:
    """KSesSDMFileReadMAC = AES-CMAC(SDMFileReadKey, SV2)."""
    _check_key("file_read_key", file_read_key)
    return aes_cmac(file_read_key, _sv2(uid, read_counter))


def _sdmmac(file_read_key: bytes, uid: bytes, read_counter: int, mac_input: bytes) -> bytes:
    full = aes_cmac(session_mac_key(file_read_key, uid, read_counter), mac_input)
    return full[1::2]


def sdmmac(file_read_key: bytes, uid: bytes, read_counter: int, mac_input: bytes = b"") -> bytes:
    """The 8-byte SDMMAC: odd-indexed bytes of the CMAC of ``mac_input`` under the session key."""
    return _sdmmac(file_read_key, uid, read_counter, mac_input)


def verify_sun(
    *, meta_read_key: bytes, file_read_key: bytes, picc_enc: bytes, sdmmac: bytes
) -> PiccData:
    """Decrypt and verify a SUN message (empty MACInput); SunMacError if the MAC is wrong."""
    check_bytes("sdmmac", sdmmac, SUN_SDMMAC_BYTES)
    picc = decrypt_picc_data(meta_read_key, picc_enc)
    expected = _sdmmac(file_read_key, picc.uid, picc.read_counter, b"")
    if not constant_time_equal(expected, sdmmac):
        raise SunMacError(
            f"SDMMAC does not verify for uid {picc.uid.hex()} counter {picc.read_counter}"
        )
    return picc
