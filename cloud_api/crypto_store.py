"""Secrets the server must *use* (device HMAC keys, tag AES keys), encrypted at rest.

Also the two other key primitives of provisioning: NXP AN10922 AES-128 key
diversification (NTAG 424 DNA keys from a site master key) and Mosquitto's ``$7$``
password hash (what the broker compares; the only form of an MQTT password we keep).

AES-256-GCM under the server key with a random 96-bit nonce per value. The
``context`` (e.g. ``b"device:wearable:0000a001:1"``) is bound as associated data,
so someone with write access to the database cannot swap one row's encrypted
key into another row. Stored layout: ``version (1) | nonce (12) | ciphertext+tag``.
Nothing here logs or formats a plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud_api.settings import SERVER_KEY_BYTES

_FORMAT_VERSION = 1
_NONCE_BYTES = 12
"""GCM's standard nonce size; random nonces are safe far beyond our key count."""


class SecretStoreError(Exception):
    """A stored secret cannot be decrypted (wrong server key, tampered row, wrong context)."""


class SecretBox:
    """Encrypts and decrypts small secrets under the server key."""

    __slots__ = ("_aead",)

    def __init__(self, server_key: bytes) -> None:
        if len(server_key) != SERVER_KEY_BYTES:
            raise ValueError(f"server key must be {SERVER_KEY_BYTES} bytes")
        self._aead = AESGCM(server_key)

    def __repr__(self) -> str:
        return "SecretBox(<server key hidden>)"

    def encrypt(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context``; a fresh nonce every call."""
        nonce = os.urandom(_NONCE_BYTES)
        return bytes([_FORMAT_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, *, context: bytes) -> bytes:
        """Decrypt a value written by :meth:`encrypt` with the same ``context``."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _FORMAT_VERSION:
            raise SecretStoreError("stored secret has an unknown format")
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], context)
        except InvalidTag as exc:
            raise SecretStoreError(
                "stored secret does not decrypt (wrong server key or context)"
            ) from exc


# ---------------------------------------------------------------- NXP AN10922 key diversification

AN10922_AES128_CONSTANT = 0x01
"""Diversification constant for an AES-128 key (AN10922 section 2.2)."""
AN10922_MAX_INPUT = 31
"""M, the diversification input, is 1..31 bytes."""
_BLOCK = 16


def _cmac_subkey_shift(block: bytes) -> bytes:
    """One CMAC subkey step (NIST SP 800-38B): shift left one bit, xor 0x87 on carry."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(_BLOCK, "big")


def an10922_diversify_aes128(master_key: bytes, diversification_input: bytes) -> bytes:
    """The AES-128 key AN10922 derives from ``master_key`` for ``diversification_input`` (M).

    AN10922 section 2.2: D = 0x01 || M, padded with 0x80 00.. to 32 bytes (then the last
    block is xored with CMAC subkey K2) or exactly 32 bytes (xored with K1); the key is
    the last block of AES-CBC over D with a zero IV. For M of 16 bytes or more this is
    AES-CMAC(K, 0x01 || M); for shorter M the fixed 32-byte padding makes it differ.
    """
    if len(master_key) != _BLOCK:
        raise ValueError("AN10922 AES-128 master key must be 16 bytes")
    if not 1 <= len(diversification_input) <= AN10922_MAX_INPUT:
        raise ValueError("AN10922 diversification input must be 1..31 bytes")
    encryptor = Cipher(algorithms.AES(master_key), modes.ECB()).encryptor()  # noqa: S305
    k0 = encryptor.update(bytes(_BLOCK)) + encryptor.finalize()
    k1 = _cmac_subkey_shift(k0)
    k2 = _cmac_subkey_shift(k1)
    data = bytes([AN10922_AES128_CONSTANT]) + diversification_input
    if len(data) == 2 * _BLOCK:
        subkey = k1
    else:
        data = data + b"\x80" + bytes(2 * _BLOCK - len(data) - 1)
        subkey = k2
    last = bytes(a ^ b for a, b in zip(data[_BLOCK:], subkey, strict=True))
    cbc = Cipher(algorithms.AES(master_key), modes.CBC(bytes(_BLOCK))).encryptor()
    out = cbc.update(data[:_BLOCK] + last) + cbc.finalize()
    return out[_BLOCK:]


# ---------------------------------------------------------------- Mosquitto password hashes

MOSQUITTO_PBKDF2_ITERATIONS = 101
"""What ``mosquitto_passwd`` (2.0) writes. The passwords hashed here are 128 random bits,
so the iteration count adds nothing an attacker could notice; matching the tool keeps the
exported file byte-compatible with what an operator would produce by hand."""
MOSQUITTO_SALT_BYTES = 12
_MOSQUITTO_HASH = "sha512"


def mosquitto_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_PBKDF2_ITERATIONS
) -> str:
    """Mosquitto's ``$7$`` PBKDF2-HMAC-SHA512 hash (the part after ``username:``)."""
    salt = os.urandom(MOSQUITTO_SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac(_MOSQUITTO_HASH, password.encode("utf-8"), salt, iterations)
    return (
        f"$7${iterations}${base64.b64encode(salt).decode('ascii')}"
        f"${base64.b64encode(derived).decode('ascii')}"
    )


def mosquitto_password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (constant-time compare)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"]:
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    derived = hashlib.pbkdf2_hmac(_MOSQUITTO_HASH, password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(derived, expected)
