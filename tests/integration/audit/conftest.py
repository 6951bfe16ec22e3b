from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app
from sotto_contracts.base import Message
from sotto_contracts.topology import Topology
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import Document
from tests.support.infra import Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually

CHECKPOINT_KEY = "test-checkpoint-key-0123456789"


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> AuditSettings:
    built: AuditSettings = make_settings(
        AuditSettings, "audit", checkpoint_key=CHECKPOINT_KEY, batch_linger_ms=2
    )
    return built


@pytest.fixture
def records(
    settings: AuditSettings, mongo: AsyncMongoClient[Document]
) -> AsyncCollection[Document]:
    return mongo[settings.database]["records"]


@pytest.fixture
async def rpc(infra: Infrastructure, settings: AuditSettings) -> AsyncIterator[RpcClient]:
    client = RpcClient(infra.rabbitmq_url, settings.topology, timeout=15)
    yield client
    await client.close()


async def consumers_of(url: str, queue_name: str) -> int:
    """How many consumers a queue has (0 while it does not exist yet)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
        except ChannelNotFoundEntity:
            return 0
        count: int = queue.declaration_result.consumer_count or 0
        return count
    finally:
        await connection.close()


@asynccontextmanager
async def serve_audit(settings: AuditSettings, instances: int = 1) -> AsyncIterator[list[str]]:
    """Run audit instances; yield once all consume events (health is up a little earlier)."""
    async with AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(serve(create_app(settings))) for _ in range(instances)
        ]
        events_queue = settings.topology.work_queue(
            "audit", "events", "#", single_active_consumer=True
        ).name
        await eventually(
            lambda: consumers_of(settings.rabbitmq_url, events_queue),
            until=lambda n: n >= instances,
            what="audit consuming events",
        )
        yield urls


async def publish_many(url: str, topology: Topology, events: Sequence[Message]) -> None:
    """Publish on one confirmed channel, confirms awaited concurrently."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchanges = {
            name: await channel.get_exchange(name, ensure=False)
            for name in {topology.exchange_of(type(event)).name for event in events}
        }
        await asyncio.gather(
            *(
                exchanges[topology.exchange_of(type(event)).name].publish(
                    aio_pika.Message(
                        event.model_dump_json().encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=str(event.message_id),
                    ),
                    routing_key=event.ROUTING_KEY,
                )
                for event in events
            )
        )
    finally:
        await connection.close()
