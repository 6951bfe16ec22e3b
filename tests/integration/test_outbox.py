"""The embedded outbox on the real database: a healthy write publishes its events once;
the relay republishes only what a writer left behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.gateway import SessionEnded
from sotto_contracts.topology import Topology
from sotto_kit.instances import Instances
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document, ensure_collections
from sotto_kit.outbox import (
    OUTBOX,
    OUTBOX_PENDING,
    OutboxRelay,
    flush,
    new_document_outbox,
    outbox_update,
    written_entries,
)
from tests.support.clock import MovingClock


class RecordingPublisher(Publisher):
    """Stands in for the broker side only; the outbox's reads and writes are real."""

    def __init__(self) -> None:
        self.published: list[str | None] = []

    async def publish_raw(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        self.published.append(message_id)


@pytest.fixture
async def documents(
    mongo: AsyncMongoClient[Document], namespace: str
) -> AsyncIterator[AsyncCollection[Document]]:
    collection = mongo[f"{namespace}_outbox"]["documents"]
    await ensure_collections([collection])
    yield collection
    await mongo.drop_database(f"{namespace}_outbox")


def _session_ended(reason: str) -> SessionEnded:
    return SessionEnded(
        practice_id="p1",
        session_ref=uuid.uuid4().hex,
        principal=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        reason=reason,
    )


async def _write_with_event(collection: AsyncCollection[Document], topology: Topology) -> str:
    event = _session_ended("sign_out")
    await collection.insert_one({"_id": "d1", **new_document_outbox(topology, [event])})
    return str(event.message_id)


async def test_a_healthy_write_is_published_once_even_when_the_relay_sweeps_meanwhile(
    documents: AsyncCollection[Document], topology: Topology
) -> None:
    publisher = RecordingPublisher()
    relay = OutboxRelay([documents], publisher, grace_seconds=60)
    event_id = await _write_with_event(documents, topology)

    assert await relay.sweep() == 0
    assert await flush(documents, "d1", publisher) == 1
    assert await relay.sweep() == 0

    assert publisher.published == [event_id]
    stored = await documents.find_one({"_id": "d1"})
    assert stored is not None
    assert stored[OUTBOX_PENDING] is False


async def test_the_relay_publishes_what_a_crashed_writer_left_behind(
    documents: AsyncCollection[Document], topology: Topology
) -> None:
    publisher = RecordingPublisher()
    relay = OutboxRelay([documents], publisher, grace_seconds=0)
    event_id = await _write_with_event(documents, topology)

    assert await relay.sweep() == 1
    assert await relay.sweep() == 0

    assert publisher.published == [event_id]


async def test_a_writer_publishes_only_what_it_wrote_and_leaves_the_rest_pending(
    documents: AsyncCollection[Document], topology: Topology
) -> None:
    publisher = RecordingPublisher()
    first = await _write_with_event(documents, topology)
    second = _session_ended("timeout")
    fields = outbox_update(topology, [second])
    await documents.update_one({"_id": "d1"}, {"$set": fields})

    assert await flush(documents, "d1", publisher, written=written_entries(fields)) == 1
    stored = await documents.find_one({"_id": "d1"})
    assert stored is not None
    assert (list(stored[OUTBOX]), stored[OUTBOX_PENDING]) == ([first], True)

    assert await flush(documents, "d1", publisher) == 1
    assert publisher.published == [str(second.message_id), first]
    stored = await documents.find_one({"_id": "d1"})
    assert stored is not None
    assert (stored[OUTBOX], stored[OUTBOX_PENDING]) == ({}, False)


async def test_a_sole_writer_empties_the_outbox_of_a_fresh_document_in_one_go(
    documents: AsyncCollection[Document], topology: Topology
) -> None:
    publisher = RecordingPublisher()
    event = _session_ended("sign_out")
    fields = new_document_outbox(topology, [event])
    await documents.insert_one({"_id": "fresh", **fields})

    written = written_entries(fields)
    assert await flush(documents, "fresh", publisher, written=written, sole_writer=True) == 1

    assert publisher.published == [str(event.message_id)]
    stored = await documents.find_one({"_id": "fresh"})
    assert stored is not None
    assert (stored[OUTBOX], stored[OUTBOX_PENDING]) == ({}, False)
    relay = OutboxRelay([documents], publisher, grace_seconds=0)
    assert await relay.sweep() == 0


async def test_after_its_first_sweep_the_relay_scans_again_only_once_an_instance_departed(
    documents: AsyncCollection[Document], topology: Topology
) -> None:
    """A scan reads the whole collection on FerretDB: a live instance scans at start-up and
    for what a departed peer left, not every few seconds."""
    publisher = RecordingPublisher()
    clock = MovingClock()
    registry = documents.database["instances"]
    ours = Instances(registry, stale_after_seconds=30, clock=clock)
    peer = Instances(registry, stale_after_seconds=30, clock=clock)
    relay = OutboxRelay([documents], publisher, grace_seconds=0, instances=ours)
    await ours.check()
    await peer.check()
    assert await relay.sweep() == 0  # the start-up scan: nothing left yet

    left_by_peer = await _write_with_event(documents, topology)  # the peer dies before its flush
    assert await relay.sweep() == 0
    clock.advance(seconds=31)
    assert await ours.check() == 1

    assert await relay.sweep() == 1
    assert publisher.published == [left_by_peer]
