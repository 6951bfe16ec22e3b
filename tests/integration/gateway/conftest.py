"""Gateway fixtures: the app over real HTTP with real RabbitMQ, MongoDB and the real
conversations (and, where asked, audit) services running in-process on the same namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app as create_audit
from sotto_contracts.common import Contact, ContactRelation, StaffRole
from sotto_contracts.inbound import ClientUpserted, PracticeUpserted, StaffUpserted
from sotto_contracts.topology import Topology
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app as create_conversations
from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app
from sotto_kit.mongo import Document
from tests.integration.gateway.support import Broker, Watch
from tests.support.infra import Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually

PRACTICE = "calm-waters"
OTHER_PRACTICE = "far-away"
CLIENT_BIRTHDAY = date(1990, 4, 12)
CONTACT_BIRTHDAY = date(1985, 1, 30)


GATEWAY_OVERRIDES: dict[str, Any] = {
    "rpc_timeout_seconds": 5,
    "settings_cache_seconds": 0,
    "link_hash_key": "test-link-key",
    "verification_hash_key": "test-verification-key",
}
CONVERSATIONS_OVERRIDES: dict[str, Any] = {"reminder_poll_seconds": 0.2}
AUDIT_OVERRIDES: dict[str, Any] = {"batch_linger_ms": 2}


@pytest.fixture
def gateway_settings(make_settings: Callable[..., Any], tmp_path: Path) -> GatewaySettings:
    settings: GatewaySettings = make_settings(
        GatewaySettings, "gateway", state_dir=tmp_path / "gateway", **GATEWAY_OVERRIDES
    )
    return settings


@pytest.fixture
def conversations_settings(make_settings: Callable[..., Any]) -> ConversationsSettings:
    settings: ConversationsSettings = make_settings(
        ConversationsSettings, "conversations", **CONVERSATIONS_OVERRIDES
    )
    return settings


@pytest.fixture
async def conversations(conversations_settings: ConversationsSettings) -> AsyncIterator[str]:
    """The real conversations service, in-process, consuming this test's namespace."""
    async with serve(create_conversations(conversations_settings)) as url:
        yield url


@pytest.fixture
async def audit(make_settings: Callable[..., Any]) -> AsyncIterator[str]:
    """The real audit service, in-process: it records every event and answers audit queries."""
    settings: AuditSettings = make_settings(AuditSettings, "audit", **AUDIT_OVERRIDES)
    async with serve(create_audit(settings)) as url:
        yield url


@pytest.fixture
async def broker(infra: Infrastructure, topology: Topology) -> AsyncIterator[Broker]:
    client = Broker(infra.rabbitmq_url, topology)
    yield client
    await client.close()


@pytest.fixture
def database(
    mongo: AsyncMongoClient[Document], gateway_settings: GatewaySettings
) -> AsyncDatabase[Document]:
    return mongo[gateway_settings.database]


@pytest.fixture
async def base_url(gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    async with serve(create_app(gateway_settings)) as url:
        yield url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        yield client


@pytest.fixture
async def notifications(broker: Broker, base_url: str) -> Watch:
    return await broker.watch(broker.topology.commands.name, "notifier.#")


@pytest.fixture
async def events(broker: Broker, base_url: str) -> Watch:
    return await broker.watch(broker.topology.events.name, "gateway.#")


@pytest.fixture
async def world(
    broker: Broker,
    base_url: str,
    conversations: str,
    database: AsyncDatabase[Document],
    mongo: AsyncMongoClient[Document],
    conversations_settings: ConversationsSettings,
) -> dict[str, Any]:
    """Two practices, a client with a partner contact, and a team covering every role, as
    inbound events that both the gateway and the real conversations service project."""
    return await seed_world(broker, database, mongo[conversations_settings.database])


async def seed_world(
    broker: Broker,
    gateway_database: AsyncDatabase[Document],
    conversations_database: AsyncDatabase[Document],
) -> dict[str, Any]:
    practices = [
        PracticeUpserted(practice_id=PRACTICE, slug="calm-waters", display_name="Calm Waters"),
        PracticeUpserted(practice_id=OTHER_PRACTICE, slug="far-away", display_name="Far Away"),
    ]
    clients = [
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="c1",
            display_name="Alex Rivera",
            email="alex@example.org",
            date_of_birth=CLIENT_BIRTHDAY,
            primary_clinician_id="clin1",
            clinician_ids=["clin1"],
            contacts=[
                Contact(
                    contact_id="k1",
                    relation=ContactRelation.PARTNER,
                    display_name="Sam Rivera",
                    email="sam@example.org",
                    date_of_birth=CONTACT_BIRTHDAY,
                )
            ],
        ),
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="c2",
            display_name="Blair Chen",
            email="blair@example.org",
            date_of_birth=date(1970, 7, 7),
            primary_clinician_id="clin2",
            clinician_ids=["clin2"],
            discreet=True,
        ),
        ClientUpserted(
            practice_id=OTHER_PRACTICE,
            client_id="x1",
            display_name="Other Client",
            email="other@example.org",
            date_of_birth=CLIENT_BIRTHDAY,
        ),
    ]
    team = [
        ("owner1", [StaffRole.OWNER], PRACTICE),
        ("manager1", [StaffRole.PRACTICE_MANAGER], PRACTICE),
        ("clin1", [StaffRole.CLINICIAN], PRACTICE),
        ("clin2", [StaffRole.CLINICIAN], PRACTICE),
        ("biller1", [StaffRole.BILLER], PRACTICE),
        ("biller2", [StaffRole.BILLER], PRACTICE),
        ("owner9", [StaffRole.OWNER], OTHER_PRACTICE),
    ]
    staff = [
        StaffUpserted(
            practice_id=practice,
            staff_id=staff_id,
            display_name=staff_id.title(),
            email=f"{staff_id}@staff.example.org",
            roles=roles,
            client_ids=["c1"] if staff_id == "clin1" else [],
            can_export=staff_id in ("owner1", "biller2"),
        )
        for staff_id, roles, practice in team
    ]
    for event in [*practices, *clients, *staff]:
        await broker.publish(event)

    async def projected() -> tuple[int, int, int, int]:
        return (
            await gateway_database["practices"].count_documents({}),
            await gateway_database["people"].count_documents({}),
            await conversations_database["settings"].count_documents({}),
            await conversations_database["people"].count_documents({}),
        )

    expected = (2, len(clients) + 1 + len(team), 2, len(clients) + len(team))
    await eventually(projected, until=lambda counts: counts == expected, what="seeded")
    return {"practices": practices, "clients": clients, "staff": staff}
