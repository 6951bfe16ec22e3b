"""Issue 7 end to end: staff message, generic email, verified link, reply, audit."""

from __future__ import annotations

import re
import uuid

import httpx

from sotto_contracts.audit import ChainVerification, VerifyChain
from sotto_contracts.topology import Topology
from sotto_kit.messaging import RpcClient
from tests.e2e.conftest import Practice
from tests.e2e.portal import ClientSession, secure_link_token
from tests.support.infra import Infrastructure
from tests.support.mail import CaughtMail, MailCatcher
from tests.support.waiting import eventually

ALEX_DOB = "1990-04-12"
SIGN_IN = re.compile(r"/api/portal/sign-in/[A-Za-z0-9_\-]{20,}")


def secret_body() -> str:
    return f"Your lab results show {uuid.uuid4().hex} - discuss diagnosis F41.1 next week"


async def open_conversation(
    staff: httpx.AsyncClient, client_id: str, body: str, subject: str = "Follow-up"
) -> str:
    conversation_id = f"conv-{uuid.uuid4().hex[:12]}"

    async def opened() -> httpx.Response:
        return await staff.post(
            "/api/staff/conversations",
            json={
                "conversation_id": conversation_id,
                "subject": subject,
                "client_id": client_id,
                "first_message": body,
            },
        )

    await eventually(opened, until=lambda r: r.status_code == 201, what="conversation opened")
    return conversation_id


async def one_mail(mail: MailCatcher, address: str, count: int = 1) -> list[CaughtMail]:
    found = await eventually(
        lambda: mail.to_address(address), until=lambda m: len(m) >= count, what=address
    )
    for caught in found:
        assert caught.envelope_recipients == [address]
        assert caught.to == [address]
        assert caught.cc == []
        assert caught.bcc == []
    return found


async def test_message_link_verify_read_reply_and_audit(
    practice: Practice, mail: MailCatcher, infra: Infrastructure
) -> None:
    body = secret_body()
    client_email = practice.email("alex")
    async with practice.staff("staff-clinician") as clinician:
        conversation_id = await open_conversation(clinician, "client-alex", body)

        [notice] = await one_mail(mail, client_email)
        assert body not in notice.all_text
        token = secure_link_token(notice)

        client = ClientSession(practice.system.gateway_url)
        try:
            opened = await client.open_link(token)
            assert opened.status_code == 200
            assert opened.json()["status"] == "needs_verification"

            wrong = await client.verify(token, "1999-01-01")
            assert wrong.status_code in (401, 403, 422)
            right = await client.verify(token, ALEX_DOB)
            assert right.status_code == 200, right.text

            thread = await client.request("GET", f"/api/client/conversations/{conversation_id}")
            assert thread.status_code == 200
            assert body in thread.text

            reply_text = f"Thanks, see you then {uuid.uuid4().hex}"
            replied = await client.request(
                "POST",
                f"/api/client/conversations/{conversation_id}/messages",
                json={"body": reply_text},
            )
            assert replied.status_code == 201, replied.text
        finally:
            await client.close()

        async def inbox_unread() -> list[dict[str, object]]:
            response = await clinician.get("/api/staff/inbox", params={"unread_only": "true"})
            items: list[dict[str, object]] = response.json()["items"]
            return items

        unread = await eventually(inbox_unread, what="reply unread in staff inbox")
        assert [item["conversation_id"] for item in unread] == [conversation_id]
        # Opening the thread reads it, which cancels a notice not yet sent: wait for it first.
        [staff_notice] = await one_mail(mail, practice.email("jordan"))
        thread = (await clinician.get(f"/api/staff/conversations/{conversation_id}")).json()
        assert reply_text in str(thread)

    assert reply_text not in staff_notice.all_text
    assert body not in staff_notice.all_text

    rpc = RpcClient(infra.rabbitmq_url, _topology(practice), timeout=30)
    try:
        verification = await eventually(
            lambda: rpc.result(VerifyChain(practice_id=practice.practice_id), ChainVerification),
            until=lambda v: v.records_checked >= 8,
            what="audit records",
        )
        assert verification.valid
    finally:
        await rpc.close()
    async with practice.staff("staff-owner") as owner:

        async def delivered_to_alex() -> set[str]:
            deliveries = await owner.get(
                "/api/staff/audit/deliveries", params={"recipient_id": "client-alex"}
            )
            assert deliveries.status_code == 200
            return {item["routing_key"] for item in deliveries.json()["items"]}

        # The notifier reports the delivery once the email is out: eight records come sooner.
        await eventually(
            delivered_to_alex,
            until=lambda kinds: "notifier.email_delivered.v1" in kinds,
            what="Alex's delivery in the audit log",
        )


async def test_message_read_before_the_delay_sends_no_email(
    practice: Practice, mail: MailCatcher
) -> None:
    async with practice.staff("staff-owner") as owner:
        saved = await owner.patch(
            "/api/staff/settings", json={"client_notification_delay_seconds": 2}
        )
        assert saved.status_code == 200
    sam = practice.email("sam")
    async with practice.staff("staff-clinician") as clinician:
        read_first = await open_conversation(clinician, "client-sam", secret_body())

        client = ClientSession(practice.system.gateway_url)
        try:
            requested = await client.request(
                "POST", f"/api/portal/{practice.practice_id}/sign-in", json={"email": sam}
            )
            assert requested.status_code == 202
            [sign_in] = await one_mail(mail, sam)
            path = SIGN_IN.search(sign_in.text)
            assert path, "no sign-in link in the email"
            signed_in = await client.request("POST", path.group(0))
            assert signed_in.status_code == 200, signed_in.text
            client.csrf_token = signed_in.json()["csrf_token"]
            read = await client.request("GET", f"/api/client/conversations/{read_first}")
            assert read.status_code == 200
        finally:
            await client.close()

        # A later message to Alex is due after Sam's would have been: once Alex's notice
        # is here, Sam's reminder time has passed too.
        await open_conversation(clinician, "client-alex", secret_body())
    await one_mail(mail, practice.email("alex"))
    assert [m.subject for m in await mail.to_address(sam)] == [sign_in.subject]


def _topology(practice: Practice) -> Topology:
    return Topology(namespace=practice.system.namespace)
