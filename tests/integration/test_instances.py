"""The registry of live instances on the real database: a stale heartbeat or a clean stop
counts as one departure, seen once by one instance, and never one's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from sotto_kit.instances import INSTANCES, Instances
from sotto_kit.mongo import Document
from tests.support.clock import MovingClock


@pytest.fixture
async def registry(
    mongo: AsyncMongoClient[Document], namespace: str
) -> AsyncIterator[AsyncCollection[Document]]:
    collection = mongo[f"{namespace}_instances"][INSTANCES]
    yield collection
    await mongo.drop_database(f"{namespace}_instances")


async def two_live_instances(
    registry: AsyncCollection[Document],
) -> tuple[MovingClock, Instances, Instances]:
    clock = MovingClock()
    ours = Instances(registry, stale_after_seconds=30, clock=clock)
    peer = Instances(registry, stale_after_seconds=30, clock=clock)
    await ours.ensure_collection()
    await ours.check()
    await peer.check()
    return clock, ours, peer


async def test_an_instance_whose_heartbeat_goes_stale_is_counted_as_departed_once(
    registry: AsyncCollection[Document],
) -> None:
    clock, ours, peer = await two_live_instances(registry)

    clock.advance(seconds=20)
    assert await ours.check() == 0  # the peer's beat is 20 s old: alive
    clock.advance(seconds=20)
    assert await ours.check() == 1
    assert await ours.check() == 0

    assert ours.departures == 1
    remaining = {document["_id"] async for document in registry.find({})}
    assert peer.instance_id not in remaining
    assert remaining == {ours.instance_id}


async def test_an_instance_never_counts_itself_and_comes_back_after_an_outage(
    registry: AsyncCollection[Document],
) -> None:
    """After a pause longer than the staleness (a database outage, a stalled loop) both beat
    again: each may count the other once, neither counts itself."""
    clock, ours, peer = await two_live_instances(registry)

    clock.advance(seconds=120)
    assert await ours.check() == 1
    assert await peer.check() == 0  # its record was taken off; its beat puts it back

    assert (ours.departures, peer.departures) == (1, 0)
    ids = {document["_id"] async for document in registry.find({})}
    assert ids == {ours.instance_id, peer.instance_id}


async def test_a_peer_that_stops_cleanly_departs_at_the_next_check_not_once_stale(
    registry: AsyncCollection[Document],
) -> None:
    clock, ours, peer = await two_live_instances(registry)

    await peer.stop()
    clock.advance(seconds=5)
    assert await ours.check() == 1
    assert {document["_id"] async for document in registry.find({})} == {ours.instance_id}


async def test_of_the_peers_that_find_a_departure_at_once_only_one_counts_it(
    registry: AsyncCollection[Document],
) -> None:
    """So one departure costs the service one scan for what it left, however many remain."""
    clock, first, second = await two_live_instances(registry)
    departed = Instances(registry, stale_after_seconds=30, clock=clock)
    await departed.check()
    await departed.stop()

    counted = await asyncio.gather(first.check(), second.check())

    assert sorted(counted) == [0, 1]
    assert first.departures + second.departures == 1
