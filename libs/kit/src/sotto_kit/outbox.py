"""Transactional outbox inside the written document (no multi-document transactions).

A write that must publish events stores them in the same document update:
`{"$set": {..., OUTBOX_PENDING: True, "outbox.<event id>": <entry>}}` (see `outbox_update`).
After the write, `flush` publishes them with confirms and removes each one published;
`OutboxRelay` republishes what is still pending, leaving entries younger than its grace period
to the writer's own flush so that a healthy write publishes its events once. Consumers are
idempotent on `message_id`, so a re-publish after a crash is harmless. Uses only `$set`/`$unset`
and equality, which FerretDB runs too.

The relay is cheap between crashes: a query on `outbox_pending` reads the whole collection on
FerretDB's SQLite backend (it uses no secondary index), so the relay scans each collection at
start-up (what a crashed predecessor left), after another instance departed (`Instances`: what
it left) and otherwise only every `full_sweep_seconds`, a safety net. Every `interval_seconds`
it retries, by `_id`, the documents whose flush failed in this process (broker or database
outage) and those it found with entries still inside the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from sotto_contracts.base import Message, utc_now
from sotto_contracts.topology import Topology
from sotto_kit.batching import UpdateBatcher
from sotto_kit.instances import Instances
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document
from sotto_kit.periodic import Periodic

OUTBOX = "outbox"
OUTBOX_PENDING = "outbox_pending"

logger = logging.getLogger(__name__)

# Documents whose flush failed in this process, by collection full name: the relay retries them.
_unflushed: dict[str, set[Any]] = {}


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


def written_entries(outbox_fields: Document) -> dict[str, Document]:
    """The entries in fields made by `new_document_outbox` or `outbox_update`, by event id:
    what a writer passes to `flush(written=...)` once the write succeeded."""
    if OUTBOX in outbox_fields:
        return dict(outbox_fields[OUTBOX])
    prefix = f"{OUTBOX}."
    return {
        key.removeprefix(prefix): value
        for key, value in outbox_fields.items()
        if key.startswith(prefix)
    }


def retry_later(collection: AsyncCollection[Document], document_id: Any) -> None:
    """Have the relay retry this document's outbox soon (a writer's own publish failed)."""
    _unflushed.setdefault(collection.full_name, set()).add(document_id)


async def flush(
    collection: AsyncCollection[Document],
    document_id: Any,
    publisher: Publisher,
    *,
    queued_before: datetime | None = None,
    written: dict[str, Document] | None = None,
    sole_writer: bool = False,
    updates: UpdateBatcher | None = None,
) -> int:
    """Publish a document's pending events, then remove them. Returns how many were sent.

    `written`: the entries the caller has just stored (`written_entries`); they are published
    without reading the document back, and entries other writers added are left to them.
    `sole_writer`: nobody else can have written to the document since (a fresh insert whose
    key has not left this process yet), so one update empties the outbox instead of two;
    `updates` (the collection's batcher) sends that update together with concurrent ones.
    """
    sent, _ = await _flush(
        collection,
        document_id,
        publisher,
        queued_before,
        written,
        sole_writer=sole_writer,
        updates=updates,
    )
    return sent


async def publish_entries(publisher: Publisher, entries: Sequence[tuple[str, Document]]) -> None:
    """Publish outbox entries (event id, entry) in chunks, so confirms are awaited
    concurrently without flooding the channel."""
    chunk_size = 500
    for start in range(0, len(entries), chunk_size):
        await asyncio.gather(
            *(
                publisher.publish_raw(
                    entry["body"].encode(),
                    exchange=entry["exchange"],
                    routing_key=entry["routing_key"],
                    message_id=event_id,
                )
                for event_id, entry in entries[start : start + chunk_size]
            )
        )


async def _flush(
    collection: AsyncCollection[Document],
    document_id: Any,
    publisher: Publisher,
    queued_before: datetime | None,
    written: dict[str, Document] | None = None,
    *,
    sole_writer: bool = False,
    updates: UpdateBatcher | None = None,
) -> tuple[int, bool]:
    """(events sent, whether entries younger than `queued_before` are left)."""
    try:
        if written is None:
            document = await collection.find_one({"_id": document_id}, {OUTBOX: 1})
            pending: dict[str, Document] = (document or {}).get(OUTBOX) or {}
        else:
            pending = written
        left = False
        if queued_before is not None:
            due = {
                event_id: entry
                for event_id, entry in pending.items()
                if entry.get("queued_at") is None or entry["queued_at"] < queued_before
            }
            left = len(due) < len(pending)
            pending = due
        if not pending:
            return 0, left
        await publish_entries(publisher, list(pending.items()))
        published = {f"{OUTBOX}.{event_id}": "" for event_id in pending}
        if sole_writer and written is not None:  # the outbox holds nothing else
            emptied = {"$unset": published, "$set": {OUTBOX_PENDING: False}}
            if updates is None:
                await collection.update_one({"_id": document_id}, emptied)
            else:
                await updates.update(document_id, emptied)
            return len(pending), False
        await collection.update_one({"_id": document_id}, {"$unset": published})
        if not left:
            await collection.update_one(
                {"_id": document_id, OUTBOX: {}}, {"$set": {OUTBOX_PENDING: False}}
            )
    except Exception:
        retry_later(collection, document_id)
        raise
    return len(pending), left


class OutboxRelay:
    """Background relay that republishes events left behind by a crash or an outage."""

    def __init__(
        self,
        collections: Sequence[AsyncCollection[Document]],
        publisher: Publisher,
        *,
        interval_seconds: float = 1.0,
        grace_seconds: float = 2.0,
        batch_size: int = 200,
        full_sweep_seconds: float = 600.0,
        instances: Instances | None = None,
    ) -> None:
        self._collections = collections
        self._publisher = publisher
        self._grace = timedelta(seconds=grace_seconds)
        self._batch_size = batch_size
        self._full_sweep_seconds = full_sweep_seconds
        self._instances = instances
        self._last_full_sweep: float | None = None
        self._departures_swept = 0
        self._watched: dict[str, set[Any]] = {}
        self._periodic = Periodic("outbox-relay", self.sweep, interval_seconds)

    async def ensure_indexes(self) -> None:
        for collection in self._collections:
            await collection.create_index(OUTBOX_PENDING)

    async def sweep(self) -> int:
        """Retry the known documents; scan the collections too when a full sweep is due."""
        started = time.monotonic()
        departures = self._instances.departures if self._instances else 0
        full = (
            self._last_full_sweep is None
            or started - self._last_full_sweep >= self._full_sweep_seconds
            or departures > self._departures_swept
        )
        sent = 0
        more = False
        queued_before = utc_now() - self._grace
        for collection in self._collections:
            name = collection.full_name
            ids = self._watched.pop(name, set()) | _unflushed.pop(name, set())
            if full:
                cursor = collection.find(
                    {OUTBOX_PENDING: True}, {"_id": 1}, max_time_ms=SCAN_TIME_LIMIT_MS
                ).limit(self._batch_size)
                found = [document["_id"] async for document in cursor]
                more = more or len(found) >= self._batch_size
                ids.update(found)
            watched = self._watched.setdefault(name, set())
            remaining = list(ids)
            try:
                while remaining:
                    document_id = remaining.pop()
                    published, left = await _flush(
                        collection, document_id, self._publisher, queued_before
                    )
                    sent += published
                    if left:
                        watched.add(document_id)
            finally:
                watched.update(remaining)
        if full and not more:
            self._last_full_sweep = started
            self._departures_swept = departures
        return sent

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
