from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sotto_kit.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", populate_by_name=True)

    database: str = Field(default="sotto_audit")
    prefetch: int = Field(
        default=1000, ge=1, le=10_000, description="Unacked events; bounds a batch's size."
    )
    batch_max_events: int = Field(default=500, ge=1, description="Events appended in one write.")
    batch_linger_ms: float = Field(
        default=50.0,
        ge=0,
        description=(
            "How long a batch waits for more events before writing: each write costs a records"
            " insert and a chain-head update per practice, so longer batches mean fewer writes."
        ),
    )
    retention_years: int = Field(default=7, ge=1, le=100)
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description=(
            "HMAC-SHA256 key that signs pruning checkpoints and chain heads; without it, records"
            " removed from a chain's end together with its head go undetected."
        ),
    )
