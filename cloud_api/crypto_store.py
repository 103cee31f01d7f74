"""Secrets the server must *use* (device HMAC keys, tag AES keys), encrypted at rest.

AES-256-GCM under the server key with a random 96-bit nonce per value. The
``context`` (e.g. ``b"device:wearable:0000a001:1"``) is bound as associated data,
so someone with write access to the database cannot swap one row's encrypted
key into another row. Stored layout: ``version (1) | nonce (12) | ciphertext+tag``.
Nothing here logs or formats a plaintext.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
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
