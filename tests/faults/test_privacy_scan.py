"""After an end-to-end run, no content, note, request detail, verification data or address
appears in any email, log line, event, audit record or notifier record."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from sotto_contracts.inbound import AppointmentRequested
from sotto_kit.mongo import Document
from tests.e2e.conftest import Practice
from tests.e2e.portal import ClientSession, secure_link_token
from tests.e2e.test_practice_events import scan_for_secrets
from tests.e2e.test_secure_messaging import ALEX_DOB, one_mail, open_conversation
from tests.faults.conftest import OUTPUT
from tests.faults.scoreboard import Scoreboard
from tests.support.amqp import Amqp
from tests.support.infra import Infrastructure
from tests.support.mail import MailCatcher
from tests.support.waiting import eventually

WRONG_DOB = "1977-07-07"


class EventProbe:
    """A private queue bound to every event of a namespace."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self._connection = connection
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self.events: list[tuple[str, bytes]] = []

    async def bind(self, exchange_name: str) -> None:
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(exclusive=True)
        await self._queue.bind(exchange, routing_key="#")

    async def drain(self) -> list[tuple[str, bytes]]:
        assert self._queue is not None
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            self.events.append((message.routing_key or "", message.body))
        return self.events


@pytest.fixture
async def probe(infra: Infrastructure, namespace: str) -> AsyncIterator[EventProbe]:
    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    found = EventProbe(connection)
    await found.bind(f"{namespace}.events")
    yield found
    await connection.close()


def findings(text: str, secrets: list[str], domain: str) -> list[str]:
    found = [secret for secret in secrets if secret in text]
    found += re.findall(rf"[\w.+-]+@{re.escape(domain)}", text)
    return found


async def test_nothing_private_leaks_anywhere(
    practice: Practice,
    probe: EventProbe,
    amqp: Amqp,
    mongo: AsyncMongoClient[Document],
    mail: MailCatcher,
    scoreboard: Scoreboard,
    request: pytest.FixtureRequest,
    scale: int,
) -> None:
    tag = uuid.uuid4().hex
    body = f"secret body about the panic attacks {tag}"
    note = f"secret internal note: suspect relapse {tag}"
    details = f"secret request detail: couples session {tag}"
    reply = f"secret reply from the client {tag}"
    await amqp.publish(
        AppointmentRequested(
            practice_id=practice.practice_id,
            request_id=f"req-{tag[:8]}",
            client_id="client-alex",
            clinician_id="staff-clinician",
            requested_start=datetime.now(UTC) + timedelta(days=3),
            details=details,
        )
    )
    async with practice.staff("staff-clinician") as clinician:
        conversation_id = await open_conversation(clinician, "client-alex", body)
        noted = await clinician.post(
            f"/api/staff/conversations/{conversation_id}/notes", json={"body": note}
        )
        assert noted.status_code == 201, noted.text
        [notice] = await one_mail(mail, practice.email("alex"))
        client = ClientSession(practice.system.gateway_url)
        try:
            token = secure_link_token(notice)
            await client.open_link(token)
            assert (await client.verify(token, WRONG_DOB)).status_code != 200
            assert (await client.verify(token, ALEX_DOB)).status_code == 200
            replied = await client.request(
                "POST",
                f"/api/client/conversations/{conversation_id}/messages",
                json={"body": reply},
            )
            assert replied.status_code == 201, replied.text
        finally:
            await client.close()
    await one_mail(mail, practice.email("jordan"))
    audit = mongo[practice.system.database("audit")]
    await eventually(
        lambda: audit["records"].count_documents({}),
        until=lambda count: count >= 5,
        what="audit records written",
    )

    secrets = [body, note, details, reply, ALEX_DOB, WRONG_DOB]
    events = await probe.drain()
    leaking_events = {
        key: findings(payload.decode(errors="replace"), secrets, practice.domain)
        for key, payload in events
    }
    leaking_events = {key: found for key, found in leaking_events.items() if found}
    log_dir = OUTPUT / request.node.name
    leaking_lines = [
        f"{path.name}: {line[:200]}"
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if findings(line, secrets, practice.domain)
    ]
    store_problem = ""
    try:
        await scan_for_secrets(mongo, practice, mail, secrets)
    except AssertionError as problem:
        store_problem = str(problem) or "a secret in an email or store"
    scoreboard.record(
        "privacy scan after an end-to-end run",
        "0 secrets/addresses in events, logs, emails, audit, notifier; 1 recipient per email",
        {
            "events scanned": len(events),
            "events leaking": len(leaking_events),
            "log lines leaking": len(leaking_lines),
            "emails/stores leaking": int(bool(store_problem)),
        },
        met=not leaking_events and not leaking_lines and not store_problem,
    )
    assert json.dumps(leaking_events) == "{}", leaking_events
    assert leaking_lines == [], "\n".join(leaking_lines[:20])
    assert store_problem == ""
    assert len(events) >= 5, "the probe saw too few events to prove anything"
