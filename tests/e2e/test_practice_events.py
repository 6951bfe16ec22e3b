"""Issue 7 end to end: practice-system events, one email per person, removal, privacy scan."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.inbound import AppointmentRequested, StatementReady
from sotto_kit.mongo import Document
from tests.e2e.conftest import Practice
from tests.e2e.portal import ClientSession, secure_link_token
from tests.e2e.test_secure_messaging import ALEX_DOB, one_mail, open_conversation, secret_body
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.waiting import eventually

SAM = ParticipantRef(kind=ParticipantKind.CLIENT, id="client-sam")
ROBIN = ParticipantRef(kind=ParticipantKind.CONTACT, id="contact-robin")


def statement(practice: Practice, content: str) -> StatementReady:
    return StatementReady(
        practice_id=practice.practice_id,
        client_id="client-sam",
        recipients=[SAM, ROBIN],
        reference_id=f"st-{uuid.uuid4().hex[:8]}",
        content=content,
    )


async def scan_for_secrets(
    mongo: AsyncMongoClient[Document], practice: Practice, mail: MailCatcher, secrets: list[str]
) -> None:
    """No secret in any email of this practice, nor in the audit and notifier stores."""
    for summary in await mail.summaries():
        if any(practice.domain in a["Address"] for a in summary.get("To") or []):
            caught = await mail.message(summary["ID"])
            assert len(caught.envelope_recipients) == 1
            for secret in secrets:
                assert secret not in caught.all_text
    for service in ("audit", "notifier"):
        database = mongo[practice.system.database(service)]
        for name in await database.list_collection_names():
            async for document in database[name].find({}):
                text = str(document)
                for secret in secrets:
                    assert secret not in text, f"{service}.{name} holds content"
                assert not re.search(rf"[\w.+-]+@{re.escape(practice.domain)}", text), (
                    f"{service}.{name} holds an email address in clear"
                )


async def test_statement_for_a_couple_routed_through_the_portal_then_direct(
    practice: Practice, amqp: Amqp, mail: MailCatcher, mongo: AsyncMongoClient[Document]
) -> None:
    portal_content = f"Statement March: balance $120.00 {uuid.uuid4().hex}"
    await amqp.publish(statement(practice, portal_content))
    sam_mails = await one_mail(mail, practice.email("sam"))
    robin_mails = await one_mail(mail, practice.email("robin"))

    async with practice.staff("staff-owner") as owner:
        transcript = await owner.get("/api/staff/clients/client-sam/transcript")
        assert transcript.status_code == 200
        assert transcript.text.count(portal_content) == 2, "one secure message per person"
        routed_off = await owner.patch(
            "/api/staff/settings", json={"route_client_emails_through_portal": False}
        )
        assert routed_off.status_code == 200

    direct_content = f"Statement April: balance $80.00 {uuid.uuid4().hex}"
    await amqp.publish(statement(practice, direct_content))
    await one_mail(mail, practice.email("sam"), count=len(sam_mails) + 1)
    await one_mail(mail, practice.email("robin"), count=len(robin_mails) + 1)

    async with practice.staff("staff-owner") as owner:
        history = await owner.get("/api/staff/clients/client-sam/transcript")
        assert "statement" in history.text.lower()

    await scan_for_secrets(mongo, practice, mail, [portal_content, direct_content])


async def test_removed_message_revokes_its_link_and_export_keeps_it(
    practice: Practice, mail: MailCatcher, mongo: AsyncMongoClient[Document]
) -> None:
    body = secret_body()
    async with practice.staff("staff-clinician") as clinician:
        conversation_id = await open_conversation(clinician, "client-alex", body)
        [notice] = await one_mail(mail, practice.email("alex"))
        token = secure_link_token(notice)
        thread = (await clinician.get(f"/api/staff/conversations/{conversation_id}")).json()
        posted_id = _first_message_id(thread)
        removed = await clinician.delete(
            f"/api/staff/conversations/{conversation_id}/messages/{posted_id}"
        )
        assert removed.status_code in (200, 204), removed.text

    client = ClientSession(practice.system.gateway_url)
    try:

        async def link_status() -> str:
            status: str = (await client.open_link(token)).json().get("link_status", "")
            return status

        await eventually(link_status, until=lambda s: s == "revoked", what="link revoked")
        refused = await client.verify(token, ALEX_DOB)
        assert refused.status_code != 200
    finally:
        await client.close()

    async with practice.staff("staff-owner") as owner:
        export = await owner.post("/api/staff/exports", json={})
        assert export.status_code == 200
        assert export.content, "an export archive"
    await scan_for_secrets(mongo, practice, mail, [body])


async def test_appointment_request_appears_in_the_inbox_with_details(
    practice: Practice, amqp: Amqp, mongo: AsyncMongoClient[Document], mail: MailCatcher
) -> None:
    details = f"Tuesdays after 5pm please, about sleep trouble {uuid.uuid4().hex}"
    await amqp.publish(
        AppointmentRequested(
            practice_id=practice.practice_id,
            request_id=f"req-{uuid.uuid4().hex[:8]}",
            client_id="client-alex",
            clinician_id="staff-clinician",
            requested_start=datetime.now(UTC) + timedelta(days=3),
            details=details,
        )
    )
    async with practice.staff("staff-clinician") as clinician:

        async def inbox() -> list[dict[str, object]]:
            response = await clinician.get("/api/staff/inbox")
            assert response.status_code == 200, response.text
            items: list[dict[str, object]] = response.json()["items"]
            return items

        items = await eventually(
            inbox,
            until=lambda found: any(i["kind"] == "appointment_request" for i in found),
            what="appointment request in the inbox",
        )
        request = next(i for i in items if i["kind"] == "appointment_request")
        thread = await clinician.get(f"/api/staff/conversations/{request['conversation_id']}")
        assert details in thread.text
    await scan_for_secrets(mongo, practice, mail, [details])


def _first_message_id(thread: dict[str, Any]) -> str:
    messages: list[dict[str, Any]] = thread["messages"]
    assert messages, "the thread has its first message"
    message_id: str = messages[0]["message_id"]
    return message_id
