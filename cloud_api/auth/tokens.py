"""Short-lived access tokens: JWT (HS256, PyJWT) under a key derived from the server key.

The signing key is derived with HKDF from the server key and a fixed label, so
the key that encrypts device secrets is never used directly for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_ALGORITHM = "HS256"  # noqa: S105  (an algorithm name)
TOKEN_ISSUER = "patrol-cloud"  # noqa: S105  (an issuer name)
_HKDF_INFO = b"patrol-cloud access-token signing key v1"
MAX_CLOCK_LEEWAY_S = 30
"""API processes' clocks may differ by this much; a later ``iat`` is refused."""


class InvalidTokenError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    username: str
    role: str
    expires_at: datetime


def signing_key(server_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(server_key)


def issue_token(
    key: bytes, *, user_id: int, username: str, role: str, now: datetime, ttl_s: int
) -> tuple[str, datetime]:
    expires_at = now + timedelta(seconds=ttl_s)
    claims = {
        "sub": str(user_id),
        "name": username,
        "role": role,
        "iss": TOKEN_ISSUER,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(claims, key, algorithm=TOKEN_ALGORITHM), expires_at


def read_token(key: bytes, token: str, *, now: datetime) -> TokenClaims:
    """Verify signature, issuer and expiry (against ``now``); raise InvalidTokenError."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[TOKEN_ALGORITHM],
            issuer=TOKEN_ISSUER,
            # Time claims are checked below against the service's injectable clock.
            options={
                "require": ["sub", "exp", "iat", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"invalid token: {exc}") from exc
    expires = int(claims["exp"])
    if now.timestamp() >= expires:
        raise InvalidTokenError("token expired")
    if int(claims["iat"]) > now.timestamp() + MAX_CLOCK_LEEWAY_S:
        raise InvalidTokenError("token issued in the future")
    try:
        return TokenClaims(
            user_id=int(claims["sub"]),
            username=str(claims["name"]),
            role=str(claims["role"]),
            expires_at=datetime.fromtimestamp(expires, tz=now.tzinfo),
        )
    except (KeyError, ValueError) as exc:
        raise InvalidTokenError("token lacks its claims") from exc
