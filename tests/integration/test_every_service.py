"""Foundation guarantees, for each of the four services alike.

A contract message goes through RabbitMQ into the service and its database and shows on its
health report; a malformed one ends in the service's parking queue with the error, and the
service keeps consuming; one sent before the service ever started waits for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app as audit_app
from sotto_contracts.base import Message
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.gateway import SessionEnded
from sotto_contracts.inbound import PracticeUpserted
from sotto_contracts.notifier import SendNotification
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app as conversations_app
from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app as gateway_app
from sotto_kit.mongo import Document
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app as notifier_app
from tests.support.amqp import Amqp
from tests.support.infra import Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Case:
    service: str
    settings_type: type[Any]
    create_app: Callable[[Any], Any]
    valid: Callable[[], Message]
    collections: frozenset[str]


def _practice() -> Message:
    suffix = uuid.uuid4().hex[:8]
    return PracticeUpserted(
        practice_id=f"p-{suffix}", slug=f"practice-{suffix}", display_name="Calm Waters"
    )


def _notification() -> Message:
    return SendNotification(
        practice_id="p1",
        notification_id=f"n-{uuid.uuid4().hex}",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        to_address=f"foundation-{uuid.uuid4().hex[:8]}@example.org",
        practice_display_name="Calm Waters",
        link_url="http://127.0.0.1:8000/l/abcdefghijklmnopqrstuvwxyz",
    )


def _session_ended() -> Message:
    return SessionEnded(
        practice_id="p1",
        session_ref="s1",
        principal=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        reason="sign_out",
    )


CONVERSATIONS_COLLECTIONS = frozenset(
    {
        "threads",
        "people",
        "settings",
        "reminders",
        "reminder_claims",
        "client_sends",
        "handled_requests",
        "announcements",
        "announcement_claims",
    }
)
GATEWAY_COLLECTIONS = frozenset(
    {"practices", "people", "links", "sign_in_links", "sign_in_link_uses", "notices", "sessions"}
)

CASES = [
    Case(
        "conversations",
        ConversationsSettings,
        conversations_app,
        _practice,
        CONVERSATIONS_COLLECTIONS,
    ),
    Case("gateway", GatewaySettings, gateway_app, _practice, GATEWAY_COLLECTIONS),
    Case(
        "notifier",
        NotifierSettings,
        notifier_app,
        _notification,
        frozenset({"deliveries", "send_windows"}),
    ),
    Case(
        "audit",
        AuditSettings,
        audit_app,
        _session_ended,
        frozenset({"records", "heads", "checkpoints"}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.service for case in CASES])
async def test_every_collection_exists_before_the_first_message(
    case: Case,
    make_settings: Callable[..., Any],
    mongo: AsyncMongoClient[Document],
    infra: Infrastructure,
) -> None:
    """FerretDB can deadlock creating a collection under load, so none is created lazily."""
    overrides = {"smtp_host": infra.smtp_host, "smtp_port": infra.smtp_port}
    settings = make_settings(
        case.settings_type, case.service, **(overrides if case.service == "notifier" else {})
    )
    async with serve(case.create_app(settings)):
        existing = set(await mongo[settings.database].list_collection_names())
    assert case.collections <= existing, sorted(case.collections - existing)


@pytest.mark.parametrize("case", CASES, ids=[case.service for case in CASES])
async def test_round_trip_and_poison_parking(
    case: Case, make_settings: Callable[..., Any], amqp: Amqp, infra: Infrastructure
) -> None:
    overrides = {"smtp_host": infra.smtp_host, "smtp_port": infra.smtp_port}
    settings = make_settings(
        case.settings_type, case.service, **(overrides if case.service == "notifier" else {})
    )
    valid = case.valid()
    exchange = amqp.topology.exchange_of(type(valid)).name
    async with (
        serve(case.create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):
        poison = b'{"practice_id": 42'
        await amqp.publish_raw(poison, exchange=exchange, routing_key=valid.ROUTING_KEY)
        await amqp.publish(valid)

        async def consumed() -> int:
            report = (await http.get("/health")).json()
            assert report["broker"] == "ok"
            assert report["database"] == "ok"
            return int(report["messages"]["consumed"].get(valid.ROUTING_KEY, 0))

        await eventually(consumed, until=lambda n: n >= 1, what=f"{case.service} consumed")
        parked = await eventually(lambda: amqp.parked(case.service), what="parked message")
        assert [p.body for p in parked] == [poison]
        assert parked[0].reason.startswith("invalid message")


@pytest.mark.parametrize("case", CASES, ids=[case.service for case in CASES])
async def test_a_message_sent_before_its_service_first_started_waits_for_it(
    case: Case, make_settings: Callable[..., Any], amqp: Amqp, infra: Infrastructure
) -> None:
    """A first deploy: another service is up and publishes (or a practice system does) before
    this one has ever run. Any service's start declares every queue, so nothing is dropped."""
    neighbour = CASES[(CASES.index(case) + 1) % len(CASES)]

    def settings_of(service: Case) -> Any:
        overrides = {"smtp_host": infra.smtp_host, "smtp_port": infra.smtp_port}
        return make_settings(
            service.settings_type,
            service.service,
            **(overrides if service.service == "notifier" else {}),
        )

    valid = case.valid()
    async with serve(neighbour.create_app(settings_of(neighbour))):
        await amqp.publish(valid)
    async with (
        serve(case.create_app(settings_of(case))) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):

        async def consumed() -> int:
            report = (await http.get("/health")).json()
            return int(report["messages"]["consumed"].get(valid.ROUTING_KEY, 0))

        await eventually(consumed, until=lambda n: n >= 1, what=f"{case.service} consumed")
