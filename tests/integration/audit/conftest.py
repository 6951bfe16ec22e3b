from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app
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
