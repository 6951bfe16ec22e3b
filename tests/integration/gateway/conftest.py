"""Gateway fixtures: the app over real HTTP with real RabbitMQ and MongoDB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import Contact, ContactRelation, StaffRole
from sotto_contracts.conversations import PracticeSettings
from sotto_contracts.inbound import ClientUpserted, PracticeUpserted, StaffUpserted
from sotto_contracts.topology import Topology
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


@pytest.fixture
def gateway_settings(make_settings: Callable[..., Any], tmp_path: Path) -> GatewaySettings:
    settings: GatewaySettings = make_settings(
        GatewaySettings,
        "gateway",
        state_dir=tmp_path / "gateway",
        rpc_timeout_seconds=3,
        settings_cache_seconds=0,
        link_hash_key="test-link-key",
        verification_hash_key="test-verification-key",
    )
    return settings


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
async def settings_answered(broker: Broker, base_url: str) -> PracticeSettings:
    settings = PracticeSettings(link_expiry_hours=24, client_rate_limit_count=3)
    await broker.answer_settings(settings)
    return settings


@pytest.fixture
async def world(broker: Broker, base_url: str, database: AsyncDatabase[Document]) -> dict[str, Any]:
    """Two practices, a client with a partner contact, and a team covering every role."""
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
        )
        for staff_id, roles, practice in team
    ]
    for event in [*practices, *clients, *staff]:
        await broker.publish(event)

    async def projected() -> tuple[int, int]:
        return (
            await database["practices"].count_documents({}),
            await database["people"].count_documents({}),
        )

    await eventually(projected, until=lambda counts: counts == (2, 4 + len(team)), what="seeded")
    return {"practices": practices, "clients": clients, "staff": staff}
