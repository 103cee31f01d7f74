"""One exception tree for every wire-format error.

Each class carries a stable ``reason`` string (class attribute): the cloud stores
it in its rejected-events record and returns it in ingest results, so the strings
never change. All are ``ValueError`` subclasses, so encoders raise them for values
out of range too: nobody can build a frame that the decoder would refuse.
"""

from typing import ClassVar, Final


class ProtocolError(ValueError):
    """Root of all protocol errors; ``reason`` is the stable rejection string."""

    reason: ClassVar[str] = "malformed"


class TruncatedError(ProtocolError):
    """Input ends before the format says it should."""

    reason: ClassVar[str] = "truncated"


class OversizedError(ProtocolError):
    """Input (or a length field) exceeds a limit in :mod:`patrol_protocol.limits`."""

    reason: ClassVar[str] = "oversized"


class VersionError(ProtocolError):
    """The version byte is not :data:`~patrol_protocol.limits.PROTOCOL_VERSION`."""

    reason: ClassVar[str] = "bad_version"


class MalformedError(ProtocolError):
    """A field holds a value the format does not allow (or bytes trail the frame)."""

    reason: ClassVar[str] = "malformed"


class UnknownKindError(MalformedError):
    """A kind/type byte that this protocol version does not define."""

    reason: ClassVar[str] = "unknown_kind"


class SignatureError(ProtocolError):
    """A MAC does not verify under the given key."""

    reason: ClassVar[str] = "bad_mac"


class SunMacError(SignatureError):
    """An NTAG 424 DNA SUN message's SDMMAC does not verify (AN12196)."""

    reason: ClassVar[str] = "bad_sun_mac"


REJECT_REASONS: Final[tuple[str, ...]] = (
    "truncated",
    "oversized",
    "bad_version",
    "malformed",
    "unknown_kind",
    "unknown_device",
    "bad_mac",
    "seq_conflict",
    "replayed_counter",
    "bad_sun_mac",
    "unknown_tag",
    "clock_skew",
    "internal_error",
    "device_revoked",
    "tag_revoked",
)
"""Every stable rejection reason of docs/protocol.md (the first seven come from here)."""
