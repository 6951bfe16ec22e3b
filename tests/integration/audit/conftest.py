from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.config import AuditSettings
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import Document
from tests.support.infra import Infrastructure

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
