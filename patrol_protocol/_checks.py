"""Shared range checks for value types and encoders (private)."""

from patrol_protocol.errors import MalformedError


def check_uint(name: str, value: int, bits: int, *, minimum: int = 0) -> None:
    """Raise MalformedError naming ``name`` unless ``minimum <= value < 2**bits``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value < (1 << bits):
        raise MalformedError(f"{name}={value} out of range {minimum}..{(1 << bits) - 1}")


def check_int8(name: str, value: int) -> None:
    """Raise MalformedError naming ``name`` unless ``value`` fits a signed byte."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{name} must be an int, got {type(value).__name__}")
    if not -128 <= value <= 127:
        raise MalformedError(f"{name}={value} out of range -128..127")


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise MalformedError naming ``name`` unless ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise MalformedError(f"{name}={value} out of range {low}..{high}")


def check_choice(name: str, value: int, allowed: frozenset[int]) -> None:
    """Raise MalformedError naming ``name`` unless ``value`` is one of ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise MalformedError(f"{name}={value!r} not one of {sorted(allowed)}")


def check_bytes(name: str, value: object, length: int) -> None:
    """Raise MalformedError naming ``name`` unless ``value`` is exactly ``length`` bytes."""
    if not isinstance(value, bytes):
        raise MalformedError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != length:
        raise MalformedError(f"{name} must be {length} bytes, got {len(value)}")


def check_reserved_bits(name: str, value: int, allowed_mask: int) -> None:
    """Raise MalformedError naming ``name`` if any bit outside ``allowed_mask`` is set."""
    if value & ~allowed_mask & 0xFF:
        raise MalformedError(
            f"{name}=0x{value:02x} sets reserved bits (allowed 0x{allowed_mask:02x})"
        )
