from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sotto_kit.settings import RelaySettings


class ConversationsSettings(RelaySettings):
    model_config = SettingsConfigDict(
        env_prefix="CONVERSATIONS_", extra="ignore", populate_by_name=True
    )

    database: str = Field(default="sotto_conversations")
    reminder_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the scheduler checks whether a known delayed reminder is due.",
    )
    reminder_scan_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Safety net: how often the reminders collection is queried for due reminders no "
            "live instance knows of (the query reads the whole collection on FerretDB). It is "
            "also queried at start-up and when another instance departed."
        ),
    )
    announcement_batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description=(
            "Client conversations an announcement creates per batch (one insert); its progress "
            "is recorded after each batch, so a restart repeats at most one batch."
        ),
    )
    announcement_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the announcement sender looks for work it knows of.",
    )
    announcement_scan_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How often the announcements collection is queried for unfinished announcements "
            "(another instance's, or one left by a crash); also at start-up."
        ),
    )
    announcement_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long an instance holds an announcement without recording a batch before "
            "another may take it over (it gives it up at once on a clean shutdown)."
        ),
    )
    fault_crash_after_write: bool = Field(
        default=False,
        description="Test hook: exit(137) right after an outbox write, before publishing.",
    )
