from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from sotto_kit.settings import ServiceSettings


class SmtpTlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


def _prefixed_or_shared(name: str) -> AliasChoices:
    """`NOTIFIER_<NAME>` wins; the unprefixed `<NAME>` serves every service in one env."""
    return AliasChoices(f"NOTIFIER_{name}", name)


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", populate_by_name=True)

    database: str = Field(default="sotto_notifier")
    smtp_host: str = Field(default="127.0.0.1", validation_alias=_prefixed_or_shared("SMTP_HOST"))
    smtp_port: int = Field(
        default=1025, ge=1, le=65535, validation_alias=_prefixed_or_shared("SMTP_PORT")
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: SmtpTlsMode = Field(
        default=SmtpTlsMode.STARTTLS,
        description="none: plain; starttls: upgrade when offered (required if require_tls); "
        "tls: implicit TLS from the first byte.",
    )
    require_tls: bool = Field(
        default=False, description="Refuse to send any email over an unencrypted connection."
    )
    smtp_validate_certs: bool = True
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    from_address: str = Field(default="no-reply@sotto.local", max_length=254)
    neutral_sender_name: str = Field(
        default="Secure portal", min_length=1, max_length=80, pattern=r"^[\w .,&'()-]+$"
    )
    pool_size: int = Field(default=4, ge=1, le=100, description="SMTP connections per instance.")
    rate_per_second: float = Field(
        default=50.0, gt=0, description="Emails per second this instance may hand to the relay."
    )
    burst: int = Field(default=10, ge=1, description="Emails that may go out back to back.")
    retry_delays_seconds: list[int] = Field(
        default_factory=lambda: [1, 5, 30, 120],
        min_length=1,
        description="Wait before each retry of a temporary failure; one tier per retry.",
    )
    address_hash_key: SecretStr | None = Field(
        default=None,
        description="Key for the recipient address fingerprint kept in delivery records; "
        "without it no trace of the address is stored.",
    )
    stale_sending_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "An SMTP window still open after this long belongs to a dead instance: the "
            "notification is settled as ambiguous, never resent."
        ),
    )
    sweep_interval_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _tls_is_possible_when_required(self) -> Self:
        if self.require_tls and self.smtp_tls is SmtpTlsMode.NONE:
            raise ValueError("require_tls is set but smtp_tls is 'none'")
        if any(delay < 1 for delay in self.retry_delays_seconds):
            raise ValueError("retry delays are whole seconds, at least 1")
        return self
