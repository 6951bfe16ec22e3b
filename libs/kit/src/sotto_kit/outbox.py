"""Transactional outbox inside the written document (no multi-document transactions).

A write that must publish events stores them in the same document update:
`{"$set": {..., OUTBOX_PENDING: True, "outbox.<event id>": <entry>}}` (see `outbox_update`).
After the write, `flush` publishes them with confirms and removes each one published;
`OutboxRelay` sweeps documents still pending (e.g. the process died between write and
publish) every few seconds, leaving entries younger than its grace period to the writer's own
flush so that a healthy write publishes its events once. Consumers are idempotent on
`message_id`, so a re-publish after a crash is harmless. Uses only `$set`/`$unset` and
equality, which FerretDB runs too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from sotto_contracts.base import Message, utc_now
from sotto_contracts.topology import Topology
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document
from sotto_kit.periodic import Periodic

OUTBOX = "outbox"
OUTBOX_PENDING = "outbox_pending"

logger = logging.getLogger(__name__)


def _entries(topology: Topology, events: Iterable[Message]) -> dict[str, Document]:
    queued_at = utc_now()
    return {
        str(event.message_id): {
            "exchange": topology.exchange_of(type(event)).name,
            "routing_key": event.ROUTING_KEY,
            "body": event.model_dump_json(),
            "queued_at": queued_at,
        }
        for event in events
    }


def outbox_update(topology: Topology, events: Iterable[Message]) -> Document:
    """`$set` fields that add `events` to an existing document's outbox."""
    entries = {f"{OUTBOX}.{key}": value for key, value in _entries(topology, events).items()}
    return {**entries, OUTBOX_PENDING: True} if entries else {}


def new_document_outbox(topology: Topology, events: Iterable[Message]) -> Document:
    """Outbox fields for a document about to be inserted."""
    outbox = _entries(topology, events)
    return {OUTBOX: outbox, OUTBOX_PENDING: bool(outbox)}


async def flush(
    collection: AsyncCollection[Document],
    document_id: Any,
    publisher: Publisher,
    *,
    queued_before: datetime | None = None,
) -> int:
    """Publish a document's pending events, then remove them. Returns how many were sent."""
    document = await collection.find_one({"_id": document_id}, {OUTBOX: 1})
    pending: dict[str, Document] = (document or {}).get(OUTBOX) or {}
    if queued_before is not None:
        pending = {
            event_id: entry
            for event_id, entry in pending.items()
            if entry.get("queued_at") is None or entry["queued_at"] < queued_before
        }
    if not pending:
        return 0
    await asyncio.gather(
        *(
            publisher.publish_raw(
                entry["body"].encode(),
                exchange=entry["exchange"],
                routing_key=entry["routing_key"],
                message_id=event_id,
            )
            for event_id, entry in pending.items()
        )
    )
    await collection.update_one(
        {"_id": document_id}, {"$unset": {f"{OUTBOX}.{event_id}": "" for event_id in pending}}
    )
    await collection.update_one({"_id": document_id, OUTBOX: {}}, {"$set": {OUTBOX_PENDING: False}})
    return len(pending)


class OutboxRelay:
    """Background sweep that republishes events left behind by a crash or an outage."""

    def __init__(
        self,
        collections: Sequence[AsyncCollection[Document]],
        publisher: Publisher,
        *,
        interval_seconds: float = 1.0,
        grace_seconds: float = 2.0,
        batch_size: int = 200,
    ) -> None:
        self._collections = collections
        self._publisher = publisher
        self._grace = timedelta(seconds=grace_seconds)
        self._batch_size = batch_size
        self._periodic = Periodic("outbox-relay", self.sweep, interval_seconds)

    async def ensure_indexes(self) -> None:
        for collection in self._collections:
            await collection.create_index(OUTBOX_PENDING)

    async def sweep(self) -> int:
        sent = 0
        queued_before = utc_now() - self._grace
        for collection in self._collections:
            cursor = collection.find({OUTBOX_PENDING: True}, {"_id": 1}).limit(self._batch_size)
            async for document in cursor:
                sent += await flush(
                    collection, document["_id"], self._publisher, queued_before=queued_before
                )
        return sent

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
