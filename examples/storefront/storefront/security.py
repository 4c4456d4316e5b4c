"""Password hashes (PBKDF2) and access tokens (JWT, signed with HS256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import jwt

from storefront.settings import settings

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """A token that is malformed, forged or expired (``str()`` says which)."""


def hash_password(password: str, *, iterations: int | None = None, salt: str | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hex digest>``; the rounds travel with the hash."""
    rounds = iterations or settings.password_iterations
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds).hex()
    return f"pbkdf2_sha256${rounds}${salt}${digest}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, rounds, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(rounds))
    return hmac.compare_digest(candidate.hex(), digest)


def issue_token(user_id: int, role: str, *, now: datetime | None = None) -> str:
    """A signed token for the user, valid for ``TOKEN_TTL`` seconds from ``now``."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "role": role,
        "iat": issued,
        "exp": issued + timedelta(seconds=settings.token_ttl),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def read_token(token: str) -> tuple[int, str]:
    """``(user id, role)`` from a token; InvalidToken if it is not one of ours or expired."""
    try:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("invalid token") from exc
    return int(claims["sub"]), str(claims.get("role", "customer"))
