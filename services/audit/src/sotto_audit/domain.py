"""Audit records: what happened, to whom, when; ids and outcomes only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AuditEntry:
    event_id: str
    routing_key: str
    practice_id: str
    occurred_at: datetime
