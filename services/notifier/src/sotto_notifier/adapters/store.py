"""Delivery records (one document per notification id) and the open SMTP windows.

Every read and write of a delivery record filters on `_id` (an attempt's result also on the
record not being final, so a final result is never replaced). FerretDB's SQLite backend
only uses an index for an `_id` equality (with `scripts/infra`'s patch, also next to other
fields); any other filter scans the whole collection, which grows by one document per
email. Conditional updates would not buy safety there anyway (two concurrent updates can both
match on FerretDB), so exclusivity comes from unique `_id` inserts into `send_windows`:

- a window `<notification id>/<attempt>` is inserted right before an attempt's message is
  handed to the relay, or the relay's refusal of its envelope is recorded (only one inserter
  wins), and deleted once the attempt's result is recorded and its event published. The
  windows collection therefore holds only attempts in flight, or left open by a dead
  instance: sweeping it is cheap, unlike a query on the growing deliveries collection.
- an open window whose record does not hold the attempt's result is a send that may or may
  not have happened: it is settled as ambiguous, never sent again.
- the result of an attempt and its event are one update (the outbox in the same write);
  after the event is published, one more `_id` update clears it.

Writes of concurrently handled commands go out together (`sotto_kit.batching`): claims and
windows in one `insert_many`, outbox clears in one bulk write of `_id` updates, closed windows
in one `delete_many`. An attempt's result is written on its own, at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from sotto_contracts.base import Message, utc_now
from sotto_contracts.common import NotificationKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology
from sotto_kit.batching import DeleteBatcher, FindBatcher, InsertBatcher, UpdateBatcher
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections
from sotto_kit.outbox import (
    OUTBOX,
    OUTBOX_PENDING,
    new_document_outbox,
    outbox_update,
    publish_entries,
    written_entries,
)
from sotto_notifier.domain import (
    FINAL_STATES,
    SENDABLE_STATES,
    DeliveryRecord,
    DeliveryState,
    OpenWindow,
    SmtpOutcome,
    WindowOutcome,
    redact_reply,
)

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


def window_id(notification_id: str, attempt: int) -> str:
    return f"{notification_id}/{attempt}"


def _open_window(document: Document) -> OpenWindow | None:
    notification_id, _, attempt = str(document["_id"]).rpartition("/")
    if not notification_id or not attempt.isdigit():
        return None
    return OpenWindow(notification_id, int(attempt), document["at"])


class DeliveryStore:
    def __init__(
        self, database: AsyncDatabase[Document], topology: Topology, publisher: Publisher
    ) -> None:
        self.collection: AsyncCollection[Document] = database[COLLECTION]
        self._windows: AsyncCollection[Document] = database[WINDOWS]
        self._topology = topology
        self._publisher = publisher
        self._claims = InsertBatcher(self.collection)
        self._reads = FindBatcher(self.collection)
        self._updates = UpdateBatcher(self.collection)
        self._window_inserts = InsertBatcher(self._windows)
        self._window_deletes = DeleteBatcher(self._windows)

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self.collection, self._windows]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)

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
        if await self._claims.insert(document):
            return _record(document)
        existing = await self.get(command.notification_id)
        if existing is None:
            raise DuplicateKeyError(f"claim of {command.notification_id} vanished")
        return existing

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        document = await self._reads.find(notification_id)
        return None if document is None else _record(document)

    async def open_window(self, notification_id: str, attempt: int) -> WindowOutcome:
        """Take the right to send `attempt`: exactly one caller ever gets OPENED.

        A unique `_id` insert is atomic on MongoDB and FerretDB alike. Because windows are
        deleted once closed, the record is read again afterwards: if it already holds the
        result of `attempt` (a concurrent copy sent and closed it), this window is withdrawn.
        """
        key = window_id(notification_id, attempt)
        if not await self._window_inserts.insert({"_id": key, "at": utc_now()}):
            return WindowOutcome.TAKEN
        try:
            current = await self.get(notification_id)
        except BaseException:
            # Nothing was sent under this window: left open, it would be settled as ambiguous.
            with contextlib.suppress(Exception):
                await self._window_deletes.delete(key)
            raise
        if (
            current is None
            or current.attempts != attempt - 1
            or current.state not in SENDABLE_STATES
        ):
            await self._window_deletes.delete(key)
            return WindowOutcome.OUTDATED
        return WindowOutcome.OPENED

    async def record_attempt(
        self,
        notification_id: str,
        attempt: int,
        state: DeliveryState,
        outcome: SmtpOutcome | None,
        event: Message,
    ) -> dict[str, Document] | None:
        """The result of `attempt` and its event, in one write; the outbox entries written, or
        None if the record already holds a final result (which is never replaced)."""
        now = utc_now()
        entry: dict[str, Any] = {"attempt": attempt, "at": now, "state": state.value}
        if outcome is not None:
            entry |= {"smtp_code": outcome.code, "smtp_reply": redact_reply(outcome.reply)}
        queued = outbox_update(self._topology, [event])
        # Not batched: until this write lands, a crash leaves the attempt ambiguous, and
        # queueing it behind other writes would let more sends than the pool has connections
        # be done but unrecorded at once.
        result = await self.collection.update_one(
            {"_id": notification_id, "state": {"$nin": [final.value for final in FINAL_STATES]}},
            {
                "$set": {"state": state.value, "attempts": attempt, "updated_at": now, **queued},
                "$unset": {"sending_since": ""},
                "$push": {"history": entry},
            },
        )
        if result.matched_count == 0:
            return None
        return written_entries(queued)

    async def publish_events(self, notification_id: str, entries: Mapping[str, Any]) -> None:
        """Publish the outbox entries `record_attempt` wrote, then clear them."""
        if entries:
            await self._publish(notification_id, entries)

    async def _publish(self, notification_id: str, entries: Mapping[str, Document]) -> None:
        await publish_entries(self._publisher, list(entries.items()))
        await self._updates.update(
            notification_id,
            {
                "$unset": {f"{OUTBOX}.{event_id}": "" for event_id in entries},
                # Safe without checking for other entries: an event is only added by the holder
                # of an open window, which stays open until that event is published, and the
                # window sweep publishes whatever a record's outbox holds.
                "$set": {OUTBOX_PENDING: False},
            },
        )

    async def publish_pending(self, notification_id: str) -> int:
        """Publish whatever the record's outbox still holds (a crash left it); how many."""
        document = await self.collection.find_one({"_id": notification_id}, {OUTBOX: 1})
        pending: dict[str, Document] = (document or {}).get(OUTBOX) or {}
        if pending:
            await self._publish(notification_id, pending)
        return len(pending)

    async def close_window(self, notification_id: str, attempt: int) -> None:
        await self._window_deletes.delete(window_id(notification_id, attempt))

    async def window(self, notification_id: str, attempt: int) -> OpenWindow | None:
        """The window of `attempt` if it is open."""
        document = await self._windows.find_one({"_id": window_id(notification_id, attempt)})
        return None if document is None else _open_window(document)

    async def open_windows(self, opened_before: datetime, limit: int = 200) -> list[OpenWindow]:
        """Windows opened before `opened_before` and still open (a small collection)."""
        cursor = self._windows.find(
            {"at": {"$lt": opened_before}}, max_time_ms=SCAN_TIME_LIMIT_MS
        ).limit(limit)
        windows = []
        async for document in cursor:
            window = _open_window(document)
            if window is None:
                with contextlib.suppress(Exception):
                    await self._windows.delete_one({"_id": document["_id"]})
                continue
            windows.append(window)
        return windows
