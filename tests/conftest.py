"""Shared fixtures: real servers, and a fresh namespace (queues) and databases per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient

from sotto_contracts.topology import Topology
from sotto_kit.mongo import Document, connect
from sotto_kit.settings import ServiceSettings
from tests.support.amqp import Amqp, delete_namespace
from tests.support.infra import (
    Infrastructure,
    drop_namespace_databases,
    heal_local_broker,
    infrastructure,
)
from tests.support.mail import MailCatcher

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    with infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
def used_namespaces(infra: Infrastructure) -> Iterator[set[str]]:
    """Every namespace the session's tests used; their databases are dropped at the end (one
    database listing per session, not per test)."""
    used: set[str] = set()
    yield used
    drop_namespace_databases(infra.mongodb_url, used)


@pytest.fixture
def namespace(infra: Infrastructure, used_namespaces: set[str]) -> Iterator[str]:
    """Unique prefix for every exchange, queue and database this test touches."""
    heal_local_broker(infra)
    name = f"t{uuid.uuid4().hex[:12]}"
    used_namespaces.add(name)
    yield name
    delete_namespace(infra.rabbitmq_management_url, name)


@pytest.fixture
def topology(namespace: str) -> Topology:
    return Topology(namespace=namespace, delivery_limit=5)


@pytest.fixture
def make_settings(infra: Infrastructure, namespace: str) -> Callable[..., Any]:
    """Build a service's settings pointed at the test servers, its own namespace and database."""

    def build(settings_type: type[SettingsT], service: str, **overrides: Any) -> SettingsT:
        values: dict[str, Any] = {
            "rabbitmq_url": infra.rabbitmq_url,
            "mongodb_url": infra.mongodb_url,
            "namespace": namespace,
            "delivery_limit": 5,
            "database": f"{namespace}_{service}",
            "outbox_interval_seconds": 0.2,
            **overrides,
        }
        return settings_type(**values)

    return build


@pytest.fixture
async def amqp(infra: Infrastructure, topology: Topology) -> AsyncIterator[Amqp]:
    client = Amqp(infra.rabbitmq_url, topology)
    yield client
    await client.close()


@pytest.fixture
async def mail(infra: Infrastructure) -> AsyncIterator[MailCatcher]:
    catcher = MailCatcher(infra.smtp_api_url)
    yield catcher
    await catcher.close()


@pytest.fixture
async def mongo(infra: Infrastructure) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = connect(infra.mongodb_url)
    yield client
    await client.close()
