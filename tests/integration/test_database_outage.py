"""Health reports a database outage and recovers by itself when the database is back; a
message that meets the outage waits it out; what the database acknowledged before it crashed
is still there afterwards."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_kit.mongo import Document, ensure_collections
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app as create_notifier
from tests.support.amqp import Amqp
from tests.support.infra import INFRA_SCRIPT, REPO, Infrastructure
from tests.support.mail import MailCatcher
from tests.support.serving import serve
from tests.support.waiting import eventually


@contextmanager
def database_stopped() -> Iterator[None]:
    subprocess.run([str(INFRA_SCRIPT), "stop-db"], check=True, cwd=REPO)
    try:
        yield
    finally:
        subprocess.run([str(INFRA_SCRIPT), "start-db"], check=True, cwd=REPO)


def crash_and_restart_database() -> None:
    subprocess.run([str(INFRA_SCRIPT), "stop-db", "--kill"], check=True, cwd=REPO)
    subprocess.run([str(INFRA_SCRIPT), "start-db"], check=True, cwd=REPO)  # waits for a ping


async def test_health_reports_database_down_then_recovers(
    infra: Infrastructure, make_settings: Callable[..., Any]
) -> None:
    if not infra.local:
        pytest.fail("this test stops the local FerretDB; run it against scripts/infra")
    settings: AuditSettings = make_settings(AuditSettings, "audit", mongo_timeout_ms=500)
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):

        async def health() -> tuple[int, str]:
            response = await http.get("/health")
            return response.status_code, response.json()["database"]

        assert await health() == (200, "ok")
        with database_stopped():
            await eventually(health, until=lambda h: h == (503, "down"), what="db down")
        await eventually(health, until=lambda h: h == (200, "ok"), what="db back", timeout=60)


async def test_a_message_that_meets_a_database_outage_waits_it_out(
    infra: Infrastructure, make_settings: Callable[..., Any], amqp: Amqp, mail: MailCatcher
) -> None:
    """Each failed delivery spends one of the queue's delivery limit (5 here, 20 by default),
    after which the message is parked. Retried every 1.5 s (0.5 s to find no server, a 1 s
    pause), a send command would be parked within this 10 s outage; held until the database
    answers again, it spends one delivery and is sent once the database is back."""
    if not infra.local:
        pytest.fail("this test stops the local FerretDB; run it against scripts/infra")
    settings: NotifierSettings = make_settings(
        NotifierSettings,
        "notifier",
        mongo_timeout_ms=500,
        smtp_host=infra.smtp_host,
        smtp_port=infra.smtp_port,
    )
    address = f"outage-{uuid.uuid4().hex[:8]}@example.org"
    command = SendNotification(
        practice_id="p1",
        notification_id=f"n-{uuid.uuid4().hex}",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        to_address=address,
        practice_display_name="Calm Waters",
        link_url="http://127.0.0.1:8000/l/abcdefghijklmnopqrstuvwxyz",
    )
    async with (
        serve(create_notifier(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):

        async def retried() -> int:
            report = (await http.get("/health")).json()
            return int(report["messages"]["retried"].get(command.ROUTING_KEY, 0))

        with database_stopped():
            await amqp.publish(command)
            await eventually(retried, until=lambda n: n >= 1, what="a delivery failed")
            await asyncio.sleep(10)  # the outage goes on
        await eventually(lambda: mail.to_address(address), what="the email", timeout=60)
        assert await retried() == 1
    assert await amqp.parked("notifier") == []


async def test_writes_acknowledged_before_the_database_crashes_survive_it(
    infra: Infrastructure, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """The local FerretDB commits without an fsync each time (SQLite's WAL with
    synchronous=NORMAL): a crash of FerretDB itself must still lose nothing it acknowledged."""
    if not infra.local:
        pytest.fail("this test kills the local FerretDB; run it against scripts/infra")
    collection = mongo[f"{namespace}_crash"]["acknowledged"]
    await ensure_collections([collection])
    for batch in range(20):
        await collection.insert_many([{"_id": f"{batch}-{n}"} for n in range(10)])
    await collection.update_one({"_id": "19-9"}, {"$set": {"last": True}})

    crash_and_restart_database()

    assert await collection.count_documents({}) == 200
    assert await collection.find_one({"_id": "19-9"}) == {"_id": "19-9", "last": True}
    await mongo.drop_database(f"{namespace}_crash")
