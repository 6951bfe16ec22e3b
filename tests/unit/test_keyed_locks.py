"""One lock per key while in use (sotto_kit.locks), and the gateway's writes to one document
waiting for each other (FerretDB rewrites whole documents, so overlapping updates lose one)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import SimpleNamespace
from typing import Any, cast

from pymongo.asynchronous.collection import AsyncCollection

from sotto_contracts.topology import Topology
from sotto_gateway.adapters.store import OutboxWriter
from sotto_kit.locks import KeyedLocks
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document


def test_one_lock_per_key_forgotten_once_unused() -> None:
    locks = KeyedLocks()
    first = locks(("links", "a"))
    assert locks(("links", "a")) is first
    assert locks(("links", "b")) is not first
    forgotten = weakref.ref(first)
    del first
    gc.collect()
    assert forgotten() is None


class RecordingCollection:
    full_name = "gateway.links"

    def __init__(self) -> None:
        self.updated: list[Any] = []

    async def update_one(self, selector: Document, update: Document) -> SimpleNamespace:
        self.updated.append(selector["_id"])
        return SimpleNamespace(matched_count=1)


async def test_an_update_waits_while_its_document_is_flushed() -> None:
    recording = RecordingCollection()
    collection = cast(AsyncCollection[Document], recording)
    writer = OutboxWriter(Topology(namespace="t"), cast(Publisher, None))

    async with writer.exclusive(collection, "link-1"):
        waiting = asyncio.create_task(
            writer.update(collection, {"_id": "link-1"}, {"failed_attempts": 1}, [])
        )
        await asyncio.sleep(0)  # let it run up to the lock
        await writer.update(collection, {"_id": "link-2"}, {"failed_attempts": 1}, [])
        assert recording.updated == ["link-2"]
        assert not waiting.done()
    await waiting
    assert recording.updated == ["link-2", "link-1"]
