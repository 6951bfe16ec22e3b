"""A running conversations service per test, a request/reply client and an event recorder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import httpx
import pytest
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.base import Message, Problem
from sotto_contracts.common import (
    Contact,
    ContactRelation,
    ParticipantKind,
    ParticipantRef,
    StaffRole,
)
from sotto_contracts.conversations import PracticeSettingsPatch, UpdateSettings
from sotto_contracts.inbound import ClientUpserted, StaffUpserted
from sotto_contracts.topology import Topology
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import Document
from tests.support.amqp import Amqp
from tests.support.infra import Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually

ResultT = TypeVar("ResultT", bound=BaseModel)
PRACTICE = "practice-1"


def staff(staff_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.STAFF, id=staff_id)


def client(client_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.CLIENT, id=client_id)


def contact(contact_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.CONTACT, id=contact_id)


class EventLog:
    """Every conversations event published in the test namespace, in arrival order."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self._topology = topology
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self._topology.events.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="conversations.#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.received.append((message.routing_key or "", json.loads(message.body)))

    def of(self, event_type: type[Message], **fields: Any) -> list[dict[str, Any]]:
        return [
            body
            for key, body in self.received
            if key == event_type.ROUTING_KEY
            and all(body.get(name) == value for name, value in fields.items())
        ]

    async def wait_for(
        self, event_type: type[Message], count: int = 1, **fields: Any
    ) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]]:
            return self.of(event_type, **fields)

        return await eventually(
            found, until=lambda items: len(items) >= count, what=f"{event_type.ROUTING_KEY}"
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


@dataclass
class Harness:
    settings: ConversationsSettings
    rpc: RpcClient
    events: EventLog
    amqp: Amqp
    database: AsyncDatabase[Document]
    practice_id: str = PRACTICE
    url: str = ""  # of the running instance's HTTP side (`harness`)
    _seeded: list[str] = field(default_factory=list)

    async def ok(self, request: Message, result_type: type[ResultT]) -> ResultT:
        reply = await self.rpc.call(request)
        assert reply.ok, reply.problem
        return result_type.model_validate(reply.result)

    async def ok_list(self, request: Message, item_type: type[ResultT]) -> list[ResultT]:
        reply = await self.rpc.call(request)
        assert reply.ok, reply.problem
        assert isinstance(reply.result, list)
        return [item_type.model_validate(item) for item in reply.result]

    async def ok_none(self, request: Message) -> None:
        reply = await self.rpc.call(request)
        assert reply.ok, reply.problem

    async def problem(self, request: Message) -> Problem:
        reply = await self.rpc.call(request)
        assert not reply.ok, f"expected a refusal, got {reply.result}"
        assert reply.problem is not None
        return reply.problem

    async def publish_and_wait(self, message: Message) -> None:
        """Publish an inbound event and wait until the service consumed it."""
        await self.amqp.publish(message)
        await self.wait_for_projection(message)

    async def handled(self, message_type: type[Message], count: int = 1) -> None:
        """Wait until the running instance has handled `count` inbound events of that type
        (their handlers returned: what they wrote and published is done)."""

        async def consumed() -> int:
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
                stats = (await http.get("/health")).json()["messages"]
            return int(stats["consumed"].get(message_type.ROUTING_KEY, 0))

        await eventually(
            consumed, until=lambda n: n >= count, what=f"{count} {message_type.ROUTING_KEY}"
        )

    async def wait_for_projection(self, message: Message) -> None:
        people = self.database["people"]
        stored_time = message.occurred_at.replace(
            microsecond=message.occurred_at.microsecond // 1000 * 1000
        )
        if isinstance(message, StaffUpserted):
            wanted = {
                "_id": f"{message.practice_id}:staff:{message.staff_id}",
                "occurred_at": stored_time,
            }
        elif isinstance(message, ClientUpserted):
            wanted = {
                "_id": f"{message.practice_id}:client:{message.client_id}",
                "occurred_at": stored_time,
            }
        else:
            return

        async def stored() -> int:
            return await people.count_documents(wanted)

        await eventually(stored, what=f"projection of {message.ROUTING_KEY}")

    async def add_staff(
        self,
        staff_id: str,
        *roles: StaffRole,
        practice_id: str | None = None,
        **fields: Any,
    ) -> ParticipantRef:
        await self.publish_and_wait(
            StaffUpserted(
                practice_id=practice_id or self.practice_id,
                staff_id=staff_id,
                display_name=f"Staff {staff_id}",
                email=f"{staff_id}@example.org",
                roles=list(roles) or [StaffRole.CLINICIAN],
                **fields,
            )
        )
        return staff(staff_id)

    async def add_client(
        self,
        client_id: str,
        *,
        practice_id: str | None = None,
        contacts: list[Contact] | None = None,
        **fields: Any,
    ) -> ParticipantRef:
        await self.publish_and_wait(
            ClientUpserted(
                practice_id=practice_id or self.practice_id,
                client_id=client_id,
                display_name=fields.pop("display_name", f"Client {client_id}"),
                email=f"{client_id}@example.org",
                contacts=contacts or [],
                **fields,
            )
        )
        return client(client_id)

    async def configure(self, actor: ParticipantRef, **changes: Any) -> None:
        await self.rpc.call(
            UpdateSettings(
                practice_id=self.practice_id,
                actor=actor,
                changes=PracticeSettingsPatch(**changes),
            )
        )


def service_queues(topology: Topology, service: str = "conversations") -> list[str]:
    return [
        topology.work_queue(service, "requests", f"{service}.*.v1").name,
        topology.work_queue(service, "inbound", "practice.#").name,
    ]


async def wait_until_consuming(url: str, topology: Topology) -> None:
    """`serve` yields once /health answers, which can be before every subscriber consumes."""
    connection = await aio_pika.connect_robust(url)
    try:
        for name in service_queues(topology):

            async def consumers(queue_name: str = name) -> int:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(queue_name, passive=True)
                    return int(queue.declaration_result.consumer_count or 0)
                except aio_pika.exceptions.ChannelClosed:
                    return 0
                finally:
                    if not channel.is_closed:
                        await channel.close()

            await eventually(consumers, timeout=60, what=f"a consumer on {name}")
    finally:
        await connection.close()


async def delete_queues(url: str, topology: Topology) -> None:
    """Quorum queues are heavy on a shared broker: remove this test's queues afterwards.

    Best effort: a broker restart during teardown must not fail the test that just passed.
    """
    try:
        connection = await aio_pika.connect_robust(url, timeout=10)
    except (ConnectionError, TimeoutError, aio_pika.exceptions.AMQPError):
        return
    try:
        channel = await connection.channel()
        for name in [*service_queues(topology), topology.parking_queue("conversations").name]:
            await channel.queue_delete(name)
    except (ConnectionError, TimeoutError, aio_pika.exceptions.AMQPError):
        return
    finally:
        await connection.close()


@asynccontextmanager
async def running_service(settings: ConversationsSettings, rabbitmq_url: str) -> AsyncIterator[str]:
    """One conversations instance, consuming before this yields its URL."""
    async with serve(create_app(settings)) as url:
        await wait_until_consuming(rabbitmq_url, settings.topology)
        yield url


async def harness_parts(
    make_settings: Callable[..., Any],
    infra: Infrastructure,
    amqp: Amqp,
    mongo: AsyncMongoClient[Document],
) -> AsyncIterator[Harness]:
    """Settings, clients and event log for a test that starts and stops instances itself."""
    settings: ConversationsSettings = make_settings(
        ConversationsSettings, "conversations", reminder_poll_seconds=0.1
    )
    events = EventLog(infra.rabbitmq_url, amqp.topology)
    await events.start()
    rpc = RpcClient(infra.rabbitmq_url, amqp.topology, timeout=15)
    try:
        yield Harness(settings, rpc, events, amqp, mongo[settings.database])
    finally:
        await rpc.close()
        await events.close()
        await delete_queues(infra.rabbitmq_url, amqp.topology)


@pytest.fixture
async def parts(
    make_settings: Callable[..., Any],
    infra: Infrastructure,
    amqp: Amqp,
    mongo: AsyncMongoClient[Document],
) -> AsyncIterator[Harness]:
    async for made in harness_parts(make_settings, infra, amqp, mongo):
        yield made


@pytest.fixture
async def harness(parts: Harness, infra: Infrastructure) -> AsyncIterator[Harness]:
    async with running_service(parts.settings, infra.rabbitmq_url) as url:
        parts.url = url
        yield parts


@dataclass(frozen=True)
class Team:
    owner: ParticipantRef
    manager: ParticipantRef
    primary: ParticipantRef
    other_clinician: ParticipantRef
    stranger_clinician: ParticipantRef
    biller: ParticipantRef
    scheduler: ParticipantRef
    supervisor: ParticipantRef
    client: ParticipantRef
    partner: ParticipantRef


async def seed_team(harness: Harness) -> Team:
    add = harness.add_staff
    team = Team(
        owner=await add("owner", StaffRole.OWNER, can_export=True),
        manager=await add(
            "manager", StaffRole.PRACTICE_MANAGER, can_view_others_conversations=True
        ),
        primary=await add("dr-primary", StaffRole.CLINICIAN),
        other_clinician=await add("dr-other", StaffRole.CLINICIAN),
        stranger_clinician=await add("dr-stranger", StaffRole.CLINICIAN),
        biller=await add("biller", StaffRole.BILLER),
        scheduler=await add("scheduler", StaffRole.SCHEDULER),
        supervisor=await add("supervisor", StaffRole.SUPERVISOR),
        client=client("c1"),
        partner=contact("c1-partner"),
    )
    await harness.add_client(
        "c1",
        display_name="Alex Rivera",
        primary_clinician_id="dr-primary",
        clinician_ids=["dr-other"],
        contacts=[
            Contact(
                contact_id="c1-partner",
                relation=ContactRelation.PARTNER,
                display_name="Sam Rivera",
                email="sam@example.org",
            )
        ],
    )
    return team


@pytest.fixture
async def team(harness: Harness) -> Team:
    return await seed_team(harness)


@pytest.fixture
def infra_url(infra: Infrastructure) -> str:
    return infra.rabbitmq_url
