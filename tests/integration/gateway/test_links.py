"""Secure message links: minted from reminders, opened, verified, locked, expired, revoked."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import (
    ClientEmailWorkflow,
    Contact,
    ContactRelation,
    NotificationKind,
    ParticipantKind,
    ParticipantRef,
)
from sotto_contracts.conversations import (
    ClientEmailDue,
    MessageRemoved,
    UnreadReminderDue,
)
from sotto_contracts.inbound import ClientUpserted
from sotto_kit.mongo import Document
from sotto_kit.outbox import OUTBOX_PENDING
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.support import (
    Broker,
    Watch,
    adopt_session,
    set_cookie_headers,
)
from tests.support.waiting import eventually

SEND = "notifier.send_notification.v1"
CLIENT = ParticipantRef(kind=ParticipantKind.CLIENT, id="c1")
CONTACT = ParticipantRef(kind=ParticipantKind.CONTACT, id="k1")
CLINICIAN = ParticipantRef(kind=ParticipantKind.STAFF, id="clin1")


def reminder(recipient: ParticipantRef, conversation_id: str = "conv1") -> UnreadReminderDue:
    return UnreadReminderDue(
        practice_id=PRACTICE,
        conversation_id=conversation_id,
        recipient=recipient,
        posted_message_id=f"m-{conversation_id}",
    )


async def issue_link(
    broker: Broker, notifications: Watch, recipient: ParticipantRef = CLIENT
) -> str:
    event = reminder(recipient)
    await broker.publish(event)
    [command] = await notifications.wait_for(
        SEND, where=lambda body: body["notification_id"] == f"reminder-{event.message_id.hex}"
    )
    token: str = command["link_url"].rsplit("/l/", 1)[1]
    return token


async def test_reminder_mints_one_link_and_one_generic_notice(
    broker: Broker,
    http: httpx.AsyncClient,
    base_url: str,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    event = reminder(CLIENT)
    await broker.publish(event)
    [command] = await notifications.wait_for(SEND)
    assert command["kind"] == NotificationKind.SECURE_MESSAGE_WAITING
    assert command["to_address"] == "alex@example.org"
    assert command["recipient"] == {"kind": "client", "id": "c1"}
    assert command["practice_display_name"] == "Calm Waters"
    assert command["conversation_id"] == "conv1"
    assert command["discreet"] is False
    assert command["link_url"].startswith(f"{'http://127.0.0.1:8000'}/l/")
    token = command["link_url"].rsplit("/l/", 1)[1]
    assert len(token) >= 43

    [issued] = await events.wait_for("gateway.link_issued.v1")
    assert issued["conversation_id"] == "conv1"
    assert token not in str(issued)
    expires = datetime.fromisoformat(issued["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)

    # the notification command (and so the token) sits in the link's outbox from the write
    # until it is published; once published, only the token's digest is kept
    async def stored_link() -> Document | None:
        return await database["links"].find_one({OUTBOX_PENDING: False})

    stored = await eventually(stored_link, until=lambda link: link is not None, what="flushed")
    assert token not in str(stored)
    assert stored is not None
    assert stored["outbox"] == {}

    await broker.publish(event)

    async def consumed() -> int:
        report = (await http.get("/health")).json()
        return int(report["messages"]["consumed"].get(event.ROUTING_KEY, 0))

    await eventually(consumed, until=lambda count: count == 2, what="redelivered reminder")
    assert len(notifications.of(SEND)) == 1
    assert await database["links"].count_documents({}) == 1


async def test_each_person_gets_their_own_notice(
    broker: Broker,
    world: dict[str, Any],
    notifications: Watch,
) -> None:
    await broker.publish(reminder(CONTACT))
    await broker.publish(reminder(CLINICIAN))
    await broker.publish(reminder(ParticipantRef(kind=ParticipantKind.CLIENT, id="c2"), "conv2"))
    commands = await notifications.wait_for(SEND, count=3)
    by_address = {command["to_address"]: command for command in commands}
    assert by_address["sam@example.org"]["kind"] == NotificationKind.SECURE_MESSAGE_WAITING
    assert "/l/" in by_address["sam@example.org"]["link_url"]
    staff = by_address["clin1@staff.example.org"]
    assert staff["kind"] == NotificationKind.STAFF_MESSAGE_WAITING
    assert staff["link_url"] == "http://127.0.0.1:8000/staff"
    assert by_address["blair@example.org"]["discreet"] is True


async def test_client_email_due_sends_the_workflow_notice(
    broker: Broker, world: dict[str, Any], notifications: Watch
) -> None:
    await broker.publish(
        ClientEmailDue(
            practice_id=PRACTICE,
            client_id="c1",
            recipient=CONTACT,
            workflow=ClientEmailWorkflow.STATEMENT_READY,
            reference_id="st-1",
            conversation_id="conv9",
        )
    )
    [command] = await notifications.wait_for(SEND)
    assert command["kind"] == NotificationKind.STATEMENT_READY
    assert command["to_address"] == "sam@example.org"
    assert command["link_url"] == "http://127.0.0.1:8000/o/calm-waters/messages"


async def test_open_then_verify_starts_a_conversation_scoped_session(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
) -> None:
    token = await issue_link(broker, notifications)
    opened = await http.post(f"/api/client/links/{token}/open")
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"] == "needs_verification"
    assert opened.json()["practice_name"] == "Calm Waters"
    await events.wait_for("gateway.link_opened.v1")

    wrong = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": "1990-04-13"}
    )
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["attempts_left"] == 4
    [failed] = await events.wait_for("gateway.verification_failed.v1")
    assert failed["failed_attempts"] == 1
    assert "1990" not in str(failed)

    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["conversation_id"] == "conv1"
    session_cookie = next(h for h in set_cookie_headers(verified) if h.startswith("sotto_session="))
    lowered = session_cookie.lower()
    assert "httponly" in lowered
    assert "secure" in lowered
    assert "samesite=strict" in lowered
    await events.wait_for("gateway.verification_succeeded.v1")
    [started] = await events.wait_for("gateway.session_started.v1")
    assert started["conversation_id"] == "conv1"
    assert started["via"] == "secure_link"
    assert started["principal"] == {"kind": "client", "id": "c1"}

    adopt_session(http, verified)
    me = await http.get("/api/client/session")
    assert me.status_code == 200
    assert me.json()["conversation_id"] == "conv1"
    assert me.json()["principal"] == {"kind": "client", "id": "c1"}

    # The slip before the success does not count towards a later lock.
    later_slip = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": "1990-04-13"}
    )
    assert later_slip.json()["attempts_left"] == 4


async def test_contact_verifies_with_their_own_date_of_birth(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
) -> None:
    token = await issue_link(broker, notifications, CONTACT)
    as_client = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert as_client.status_code == 422
    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": "1985-01-30"}
    )
    assert verified.status_code == 200
    adopt_session(http, verified)
    assert (await http.get("/api/client/session")).json()["principal"] == CONTACT.model_dump(
        mode="json"
    )


async def test_link_locks_after_five_failed_verifications(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
) -> None:
    token = await issue_link(broker, notifications)
    answers = [
        await http.post(
            f"/api/client/links/{token}/verify",
            json={"date_of_birth": date(2000, 1, day).isoformat()},
        )
        for day in range(1, 6)
    ]
    assert [answer.status_code for answer in answers] == [422, 422, 422, 422, 410]
    assert answers[-1].json()["code"] == "link_locked"
    assert answers[-1].json()["sign_in_url"] == "http://127.0.0.1:8000/o/calm-waters/messages"
    failures = await events.wait_for("gateway.verification_failed.v1", count=5)
    assert sorted(item["failed_attempts"] for item in failures) == [1, 2, 3, 4, 5]
    await events.wait_for("gateway.link_locked.v1")

    correct = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert correct.status_code == 410
    assert correct.json()["code"] == "link_locked"
    assert "sotto_session" not in correct.cookies
    reopened = await http.post(f"/api/client/links/{token}/open")
    assert reopened.status_code == 410
    assert reopened.json()["link_status"] == "locked"


async def test_expired_link_is_refused_with_a_way_to_sign_in(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    token = await issue_link(broker, notifications)
    await database["links"].update_many(
        {}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    opened = await http.post(f"/api/client/links/{token}/open")
    assert opened.status_code == 410
    assert opened.json()["code"] == "link_expired"
    assert opened.json()["sign_in_url"].endswith("/o/calm-waters/messages")
    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert verified.status_code == 410
    [refusal, *_] = await events.wait_for("gateway.link_refused.v1")
    assert refusal["reason"] == "expired"


async def test_removing_the_message_revokes_its_links(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
) -> None:
    token = await issue_link(broker, notifications)
    await broker.publish(
        MessageRemoved(practice_id=PRACTICE, conversation_id="conv1", posted_message_id="m-conv1")
    )
    [revoked] = await events.wait_for("gateway.link_revoked.v1")
    assert revoked["conversation_id"] == "conv1"
    opened = await http.post(f"/api/client/links/{token}/open")
    assert opened.status_code == 410
    assert opened.json()["code"] == "link_revoked"


async def test_a_reminder_handled_after_its_messages_removal_sends_nothing(
    broker: Broker, world: dict[str, Any], notifications: Watch, database: AsyncDatabase[Document]
) -> None:
    """The two events come on different queues: the removal may be handled first."""
    await broker.publish(
        MessageRemoved(practice_id=PRACTICE, conversation_id="conv1", posted_message_id="m-conv1")
    )

    async def marked() -> int:
        return await database["removed_messages"].count_documents({})

    await eventually(marked, until=lambda count: count == 1, what="removal recorded")
    late = reminder(CLIENT)
    await broker.publish(late)

    async def handled() -> int:
        return await database["notices"].count_documents({"_id": str(late.message_id)})

    await eventually(handled, until=lambda count: count == 1, what="reminder handled")
    assert not [c for c in notifications.of(SEND) if late.message_id.hex in c["notification_id"]]
    assert await database["links"].count_documents({"posted_message_id": "m-conv1"}) == 0


async def test_unknown_link_is_not_found(http: httpx.AsyncClient) -> None:
    answer = await http.post("/api/client/links/not-a-real-token/open")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


async def test_a_recipient_without_details_on_file_is_sent_to_sign_in_not_locked_out(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    """Family members and representatives often have no date of birth on file: no answer can
    match, so the link says to sign in with their email instead of counting failures."""
    alex = world["clients"][0]
    await broker.publish(
        ClientUpserted(
            **alex.model_dump(exclude={"message_id", "occurred_at", "contacts"}),
            contacts=[
                Contact(
                    contact_id="k1",
                    relation=ContactRelation.PARTNER,
                    display_name="Sam Rivera",
                    email="sam@example.org",
                )
            ],
        )
    )

    async def sams_details() -> object:
        sam = await database["people"].find_one({"_id": f"{PRACTICE}|contact|k1"})
        assert sam is not None
        return sam["verification_hash"]

    await eventually(sams_details, until=lambda value: value is None, what="no details on file")
    token = await issue_link(broker, notifications, CONTACT)

    opened = await http.post(f"/api/client/links/{token}/open")
    assert opened.status_code == 410
    assert opened.json()["link_status"] == "sign_in_instead"
    assert opened.json()["sign_in_url"].endswith("/o/calm-waters/messages")
    for _ in range(6):
        tried = await http.post(
            f"/api/client/links/{token}/verify", json={"date_of_birth": "1990-01-01"}
        )
        assert tried.status_code == 410
        assert tried.json()["link_status"] == "sign_in_instead"
    link = await database["links"].find_one({"recipient.id": "k1"})
    assert link is not None
    assert (link["failed_attempts"], link["locked"]) == (0, False)
