"""Staff bearer tokens: verification with a static key or a JWKS, and a development key pair."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sotto_gateway.config import GatewaySettings

DEVELOPMENT_KEY_FILE = "staff-signing-key.pem"


class InvalidStaffTokenError(Exception):
    """The bearer token is missing, malformed, expired or not signed by a trusted key."""


@dataclass(frozen=True)
class StaffClaims:
    staff_id: str
    practice_id: str


def development_private_key(state_dir: Path) -> Ed25519PrivateKey:
    """The local signing key, generated into the state directory on first use."""
    path = state_dir / DEVELOPMENT_KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 private key")
    return key


def mint_staff_token(
    settings: GatewaySettings, *, practice_id: str, staff_id: str, lifetime: timedelta
) -> str:
    """A development token signed with the local key (for `python -m sotto_gateway`)."""
    now = datetime.now(UTC)
    claims = {
        "sub": staff_id,
        "practice_id": practice_id,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, development_private_key(settings.state_dir), algorithm="EdDSA")


class StaffTokenVerifier:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        self._static_key: Any = None
        if self._jwks is None:
            if settings.jwt_public_key:
                self._static_key = serialization.load_pem_public_key(
                    settings.jwt_public_key.encode()
                )
            else:
                self._static_key = development_private_key(settings.state_dir).public_key()

    async def verify(self, token: str) -> StaffClaims:
        try:
            if self._jwks is not None:
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key: Any = signing_key.key
            else:
                key = self._static_key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._settings.jwt_algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidStaffTokenError(type(error).__name__) from error
        staff_id, practice_id = claims.get("sub"), claims.get("practice_id")
        if not isinstance(staff_id, str) or not isinstance(practice_id, str):
            raise InvalidStaffTokenError("missing sub or practice_id")
        return StaffClaims(staff_id=staff_id, practice_id=practice_id)
