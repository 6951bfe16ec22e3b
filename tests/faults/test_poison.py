"""Malformed and poison messages to every service: each parked with its reason, the consumers
stay up, and the good messages interleaved with them are all processed."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from functools import partial

import aio_pika
import httpx
import pytest

from sotto_cli.demo import demo_practice
from sotto_contracts.audit import ChainVerification, VerifyChain
from sotto_contracts.base import Message
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import EmailDelivered
from sotto_contracts.topology import ExchangeName, Topology
from sotto_kit.messaging import RpcClient
from tests.e2e.conftest import Practice
from tests.e2e.test_secure_messaging import open_conversation
from tests.faults.load import as_publishable, notification, publish_confirmed
from tests.faults.scoreboard import Scoreboard
from tests.support.amqp import Amqp
from tests.support.infra import Infrastructure
from tests.support.mail import MailCatcher
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

GOOD_NOTIFICATIONS = 20
GOOD_AUDIT_EVENTS = 20

# Where poison goes in, and which services' parking queues it must end in.
TARGETS: dict[tuple[ExchangeName, str], tuple[str, ...]] = {
    ("commands", "notifier.send_notification.v1"): ("notifier",),
    ("inbound", "practice.client_upserted.v1"): ("conversations", "gateway"),
    ("events", "fuzz.unknown_event.v1"): ("audit",),
}


# Each poison body is prefix + unique tag + suffix: undecodable, truncated, wrong shape or type.
POISON_SHAPES: tuple[tuple[bytes, bytes], ...] = (
    (b"not json at all ", b""),
    (b"\xff\xfe\x00", b""),
    (b'{"message_id": "', b'"'),
    (b'["', b'"]'),
    (b'{"practice_id": 42, "note": "', b'"}'),
    (b'{"message_id": "', b'", "occurred_at": "yesterday"}'),
)


def poison_bodies(marker: str, count: int) -> Iterator[bytes]:
    shapes = itertools.cycle(POISON_SHAPES)
    for index, (prefix, suffix) in zip(range(count), shapes, strict=False):
        yield prefix + f"{marker}-{index}".encode() + suffix


def good_audit_events(practice_id: str) -> list[Message]:
    return [
        EmailDelivered(
            practice_id=practice_id,
            notification_id=f"n-{uuid.uuid4().hex}",
            kind=NotificationKind.SECURE_MESSAGE_WAITING,
            recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="client-audit"),
            attempt=1,
            smtp_code=250,
        )
        for _ in range(GOOD_AUDIT_EVENTS)
    ]


def interleave(
    poison: list[bytes], good: list[tuple[str, bytes]], key: str
) -> list[tuple[str, bytes]]:
    every = max(1, len(poison) // max(1, len(good)))
    mixed: list[tuple[str, bytes]] = []
    remaining = list(good)
    for index, body in enumerate(poison):
        mixed.append((key, body))
        if remaining and index % every == 0:
            mixed.append(remaining.pop(0))
    return mixed + remaining


async def parking_depths(url: str, topology: Topology, services: list[str]) -> dict[str, int]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        depths: dict[str, int] = {}
        for service in services:
            queue = await channel.declare_queue(topology.parking_queue(service).name, passive=True)
            depths[service] = queue.declaration_result.message_count or 0
        return depths
    finally:
        await connection.close()


async def poison_every_service(
    per_service: int,
    system: RunningSystem,
    amqp: Amqp,
    mail: MailCatcher,
    infra: Infrastructure,
    scoreboard: Scoreboard,
) -> None:
    namespace = system.namespace
    topology = Topology(namespace=namespace)
    marker = f"poison-{namespace}"
    domain = f"{namespace}.example.org"
    audit_practice = f"{namespace}-audit"
    notifications = [
        notification(f"good-{index}-{namespace}", f"good{index}@{domain}")
        for index in range(GOOD_NOTIFICATIONS)
    ]
    good: dict[str, list[Message]] = {
        "commands": list(notifications),
        "inbound": list(demo_practice(namespace, domain)),
        "events": good_audit_events(audit_practice),
    }
    for (exchange, key), _ in TARGETS.items():
        bodies = list(poison_bodies(f"{marker}-{exchange}", per_service))
        await publish_confirmed(
            infra.rabbitmq_url,
            topology.exchange(exchange).name,
            interleave(bodies, as_publishable(good[exchange]), key),
        )

    services = [service for targets in TARGETS.values() for service in targets]
    await eventually(
        lambda: parking_depths(infra.rabbitmq_url, topology, services),
        until=lambda depths: all(depth >= per_service for depth in depths.values()),
        timeout=max(120, per_service / 10),
        interval=2.0,
        what="every poison message parked",
    )
    parked: dict[str, int] = {}
    for (exchange, _), targets in TARGETS.items():
        for service in targets:
            tagged = [
                found
                for found in await amqp.parked(service)
                if f"{marker}-{exchange}".encode() in found.body
            ]
            assert all(found.reason for found in tagged), "a parked message without its reason"
            parked[service] = len(tagged)

    for address in (item.to_address for item in notifications):
        await eventually(partial(mail.to_address, str(address)), what=f"good email {address}")
    practice = Practice(namespace, domain, system)
    async with practice.staff("staff-owner") as owner:

        async def settings_saved() -> int:
            answer = await owner.patch(
                "/api/staff/settings", json={"client_notification_delay_seconds": 0}
            )
            return answer.status_code

        await eventually(settings_saved, until=lambda status: status == 200, what="settings")
    async with practice.staff("staff-clinician") as clinician:
        for client in ("client-alex", "client-sam"):
            await open_conversation(clinician, client, "Checking in")
    for client in ("alex", "sam"):
        await eventually(partial(mail.to_address, practice.email(client)), what=client)

    rpc = RpcClient(infra.rabbitmq_url, topology, timeout=30)
    try:
        audited = await eventually(
            lambda: rpc.result(VerifyChain(practice_id=audit_practice), ChainVerification),
            until=lambda verification: verification.records_checked >= GOOD_AUDIT_EVENTS,
            what="good audit events recorded",
        )
    finally:
        await rpc.close()

    async with httpx.AsyncClient(timeout=10) as http:
        health = {
            name: (await http.get(f"{service.url}/health")).status_code
            for name, service in system.services.items()
        }
    exited = [
        name
        for name, service in system.services.items()
        if service.process and service.process.poll() is not None
    ]
    met = (
        all(value == per_service for value in parked.values())
        and audited.records_checked == GOOD_AUDIT_EVENTS
        and set(health.values()) == {200}
        and not exited
    )
    scoreboard.record(
        f"poison x{per_service} per service",
        "all parked with reason, consumers up, good ones processed",
        {
            **{f"parked {name}": value for name, value in parked.items()},
            "good audit": audited.records_checked,
            "services down": len(exited),
        },
        met=met,
    )
    assert parked == dict.fromkeys(parked, per_service)
    assert audited.records_checked == GOOD_AUDIT_EVENTS
    assert set(health.values()) == {200}, health
    assert exited == []


async def test_poison_to_each_service(
    system: RunningSystem,
    amqp: Amqp,
    mail: MailCatcher,
    infra: Infrastructure,
    scoreboard: Scoreboard,
) -> None:
    await poison_every_service(200, system, amqp, mail, infra, scoreboard)


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_ten_thousand_poison_to_each_service(
    system: RunningSystem,
    amqp: Amqp,
    mail: MailCatcher,
    infra: Infrastructure,
    scoreboard: Scoreboard,
) -> None:
    await poison_every_service(10_000, system, amqp, mail, infra, scoreboard)
