"""Gateway settings (env prefix GATEWAY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from sotto_kit.settings import RelaySettings

DEVELOPMENT_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_KEY_LENGTH = 32


class GatewaySettings(RelaySettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    database: str = Field(default="sotto_gateway")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Where links in emails point."
    )
    jwt_issuer: str = Field(default="sotto-dev")
    jwt_audience: str = Field(default="sotto-staff")
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key that signs staff tokens (instead of a JWKS)."
    )
    jwt_jwks_url: str | None = Field(default=None, description="The identity provider's JWKS.")
    jwt_algorithms: list[str] = Field(default=["RS256", "ES256", "EdDSA"])
    state_dir: Path = Field(
        default=Path(".state/gateway"),
        description="Where the development signing key pair is generated on first use.",
    )
    link_hash_key: SecretStr = Field(
        default=SecretStr("development-link-key-change-me"),  # refused outside development
        description="HMAC key for link, sign-in and session token hashes.",
    )
    verification_hash_key: SecretStr = Field(
        default=SecretStr("development-verification-key-change-me"),
        description="HMAC key for verification data such as dates of birth.",
    )
    cookie_secure: bool = True
    session_idle_minutes: float = Field(default=15, gt=0)
    session_absolute_minutes: float = Field(default=60, gt=0)
    sign_in_link_minutes: float = Field(default=15, gt=0)
    max_verification_failures: int = Field(default=5, ge=1)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    settings_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How long a practice's settings, name and slug are kept in memory; a change "
            "shows on every instance within this long."
        ),
    )
    max_request_bytes: int = Field(default=64_000, ge=1024)
    max_requests_in_progress: int = Field(
        default=100,
        ge=1,
        description=(
            "API requests (`/api/`) one instance answers at once; pages, static files, health "
            "and metrics are not counted. One more is refused at once with 503 `busy` and "
            "Retry-After, so "
            "under overload the admitted requests keep their latency instead of all of them "
            "queueing until they time out. Size it as the requests per second one instance "
            "sustains times the latency you accept."
        ),
    )
    sign_in_emails_per_address: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description=(
            "Sign-in emails one address gets per `sign_in_address_period_minutes`, counted by "
            "every instance together; beyond that a request is answered alike, but nothing is "
            "sent and the earlier link stays valid."
        ),
    )
    sign_in_address_period_minutes: float = Field(default=15, gt=0)
    sign_in_requests_per_ip: int = Field(
        default=10,
        ge=1,
        description=(
            "Sign-in requests one client IP address may make per `sign_in_ip_period_seconds` on "
            "one instance; beyond that the answer is 429 with Retry-After."
        ),
    )
    sign_in_ip_period_seconds: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _deployed_with_secrets_of_its_own(self) -> Self:
        """Links pointing anywhere but this machine mean a deployment: the published
        development keys, or tokens signed by a key the gateway made itself, would let anyone
        forge staff tokens or undo the keyed hashes of dates of birth."""
        if urlsplit(self.public_base_url).hostname in DEVELOPMENT_HOSTS:
            return self
        unset = [
            name
            for name, key in (
                ("GATEWAY_LINK_HASH_KEY", self.link_hash_key),
                ("GATEWAY_VERIFICATION_HASH_KEY", self.verification_hash_key),
            )
            if "change-me" in key.get_secret_value() or len(key.get_secret_value()) < MIN_KEY_LENGTH
        ]
        if self.jwt_jwks_url is None and self.jwt_public_key is None:
            unset.append("GATEWAY_JWT_JWKS_URL or GATEWAY_JWT_PUBLIC_KEY")
        if unset:
            raise ValueError(
                f"links point to {self.public_base_url}, not a development address: set "
                + ", ".join(unset)
                + f" (keys: at least {MIN_KEY_LENGTH} random characters)"
            )
        return self
