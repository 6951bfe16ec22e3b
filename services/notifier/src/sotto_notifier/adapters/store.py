"""Delivery records: one document per notification id, its state, attempts and outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from sotto_contracts.base import Message, utc_now
from sotto_contracts.common import NotificationKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document, ensure_collections
from sotto_kit.outbox import flush, new_document_outbox, outbox_update
from sotto_notifier.domain import DeliveryRecord, DeliveryState, SmtpOutcome, redact_reply

COLLECTION = "deliveries"
WINDOWS = "send_windows"


def _record(document: Document) -> DeliveryRecord:
    return DeliveryRecord(
        notification_id=document["_id"],
        practice_id=document["practice_id"],
        kind=NotificationKind(document["kind"]),
        recipient=ParticipantRef.model_validate(document["recipient"]),
        conversation_id=document.get("conversation_id"),
        state=DeliveryState(document["state"]),
        attempts=int(document["attempts"]),
    )


class DeliveryStore:
    def __init__(
        self, database: AsyncDatabase[Document], topology: Topology, publisher: Publisher
    ) -> None:
        self.collection: AsyncCollection[Document] = database[COLLECTION]
        self._windows: AsyncCollection[Document] = database[WINDOWS]
        self._topology = topology
        self._publisher = publisher

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self.collection, self._windows]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.collection.create_index([("state", 1), ("sending_since", 1)])

    async def claim(
        self, command: SendNotification, recipient_fingerprint: str | None
    ) -> DeliveryRecord:
        """Create the record for this notification id, or return the one already there."""
        now = utc_now()
        document: Document = {
            "_id": command.notification_id,
            "practice_id": command.practice_id,
            "kind": command.kind.value,
            "recipient": command.recipient.model_dump(mode="json"),
            "conversation_id": command.conversation_id,
            "recipient_fingerprint": recipient_fingerprint,
            "command_id": str(command.message_id),
            "state": DeliveryState.CLAIMED.value,
            "attempts": 0,
            "history": [],
            "created_at": now,
            "updated_at": now,
            **new_document_outbox(self._topology, []),
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            existing = await self.get(command.notification_id)
            if existing is not None:
                return existing
            raise
        return _record(document)

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        document = await self.collection.find_one({"_id": notification_id})
        return None if document is None else _record(document)

    async def _take_window(self, notification_id: str, attempt: int) -> bool:
        """Exactly one caller may send each attempt.

        A conditional update is not enough: FerretDB's SQLite backend can let two concurrent
        updates both match the same filter. A unique `_id` insert is atomic everywhere.
        """
        try:
            await self._windows.insert_one({"_id": f"{notification_id}/{attempt}", "at": utc_now()})
        except DuplicateKeyError:
            return False
        return True

    async def start_sending(self, record: DeliveryRecord) -> bool:
        """Open the SMTP window for attempt `attempts + 1`; False if someone else moved first."""
        now = utc_now()
        result = await self.collection.update_one(
            {
                "_id": record.notification_id,
                "state": record.state.value,
                "attempts": record.attempts,
            },
            {
                "$set": {
                    "state": DeliveryState.SENDING.value,
                    "attempts": record.attempts + 1,
                    "sending_since": now,
                    "updated_at": now,
                }
            },
        )
        if result.modified_count != 1:
            return False
        return await self._take_window(record.notification_id, record.attempts + 1)

    async def finish_attempt(
        self,
        notification_id: str,
        attempt: int,
        state: DeliveryState,
        outcome: SmtpOutcome | None,
        event: Message,
    ) -> bool:
        """Close the SMTP window of `attempt` with its result and event; False if it was closed."""
        now = utc_now()
        entry: dict[str, Any] = {"attempt": attempt, "at": now, "state": state.value}
        if outcome is not None:
            entry |= {"smtp_code": outcome.code, "smtp_reply": redact_reply(outcome.reply)}
        result = await self.collection.update_one(
            {
                "_id": notification_id,
                "state": DeliveryState.SENDING.value,
                "attempts": attempt,
            },
            {
                "$set": {
                    "state": state.value,
                    "updated_at": now,
                    **outbox_update(self._topology, [event]),
                },
                "$unset": {"sending_since": ""},
                "$push": {"history": entry},
            },
        )
        return result.modified_count == 1

    async def stale_sending(
        self, started_before: datetime, limit: int = 200
    ) -> list[DeliveryRecord]:
        cursor = self.collection.find(
            {"state": DeliveryState.SENDING.value, "sending_since": {"$lt": started_before}}
        ).limit(limit)
        return [_record(document) async for document in cursor]

    async def publish_pending(self, notification_id: str) -> None:
        await flush(self.collection, notification_id, self._publisher)
