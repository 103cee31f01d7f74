"""One exception tree for the firmware's decoders; reasons match patrol_protocol.errors."""


class ProtocolError(ValueError):
    """Base: input that is not a valid protocol v1 message. ``reason`` is stable text."""

    reason = "malformed"


class TruncatedError(ProtocolError):
    reason = "truncated"


class OversizedError(ProtocolError):
    reason = "oversized"


class VersionError(ProtocolError):
    reason = "bad_version"


class MalformedError(ProtocolError):
    reason = "malformed"


class UnknownKindError(MalformedError):
    reason = "unknown_kind"


class SignatureError(ProtocolError):
    reason = "bad_mac"
