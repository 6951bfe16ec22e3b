from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from sotto_kit.mongo import Document

from sotto_audit.domain import AuditEntry


class AuditStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._records = database["records"]

    async def ensure_indexes(self) -> None:
        await self._records.create_index("event_id", unique=True)

    async def append(self, entry: AuditEntry) -> bool:
        """False when the event was already recorded (redelivery)."""
        try:
            await self._records.insert_one(
                {
                    "event_id": entry.event_id,
                    "routing_key": entry.routing_key,
                    "practice_id": entry.practice_id,
                    "occurred_at": entry.occurred_at,
                }
            )
        except DuplicateKeyError:
            return False
        return True
