"""Gateway settings (env prefix GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sotto_kit.settings import RelaySettings


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
        default=SecretStr("development-link-key-change-me"),
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
