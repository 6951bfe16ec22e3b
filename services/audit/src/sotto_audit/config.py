from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from sotto_kit.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", populate_by_name=True)

    database: str = Field(default="sotto_audit")
