"""A simulated NTAG 424 DNA tag that produces real SUN messages from its keys.

Until a personalisation station writes keys onto physical tags, the demo and the
tests tap this simulation. It does what the tag's SDM engine does on every read
(NXP AN12196): increment the 24-bit read counter, encrypt PICCData under the
SDMMetaReadKey, compute the SDMMAC under the session key derived from the
SDMFileReadKey, and mirror both into the NDEF URI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from patrol_protocol.sun import sdmmac

PICC_DATA_TAG_UID_CTR = 0xC7  # UID and counter mirrored, UID length 7 (AN12196 table 3)
MAX_READ_COUNTER = 0xFFFFFF  # the counter is 24 bits; the tag stops answering at the top
NDEF_URI_PREFIX_HTTPS = 0x04  # NFC Forum URI record prefix code for "https://"


@dataclass
class SimNtag424:
    """One tag: UID, keys and the read counter it keeps in its own memory."""

    uid: bytes
    meta_read_key: bytes
    file_read_key: bytes
    read_counter: int = 0
    base_url: str = "verify.patrol.example/t"
    _padding: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if len(self.uid) != 7:
            raise ValueError(f"NTAG 424 DNA UIDs are 7 bytes, got {len(self.uid)}")
        for name in ("meta_read_key", "file_read_key"):
            if len(getattr(self, name)) != 16:
                raise ValueError(f"{name} must be an AES-128 key (16 bytes)")

    def sun(self, *, padding: bytes | None = None) -> tuple[bytes, bytes]:
        """Advance the counter and return (encrypted PICCData, SDMMAC) for this read."""
        if self.read_counter >= MAX_READ_COUNTER:
            raise RuntimeError("SDM read counter exhausted")
        self.read_counter += 1
        pad = padding if padding is not None else os.urandom(5)
        picc = (
            bytes([PICC_DATA_TAG_UID_CTR])
            + self.uid
            + self.read_counter.to_bytes(3, "little")
            + pad
        )
        encryptor = Cipher(algorithms.AES(self.meta_read_key), modes.CBC(bytes(16))).encryptor()
        picc_enc = encryptor.update(picc) + encryptor.finalize()
        return picc_enc, sdmmac(self.file_read_key, self.uid, self.read_counter)

    def read_ndef(self) -> bytes:
        """One read of the NDEF file as a reader sees it: a fresh SUN URI message.

        Returns the NDEF message (one short URI record), without the 2-byte NLEN
        that precedes it in the tag's file E104.
        """
        picc_enc, mac = self.sun()
        uri = f"{self.base_url}?e={picc_enc.hex().upper()}&c={mac.hex().upper()}".encode()
        payload = bytes([NDEF_URI_PREFIX_HTTPS]) + uri
        # MB=1 ME=1 SR=1 TNF=well-known (0xD1), type length 1, payload length, type "U"
        return bytes([0xD1, 0x01, len(payload), ord("U")]) + payload
