"""The gateway with the real conversations service: staff and client flows end to end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import NotificationKind
from sotto_contracts.inbound import (
    ClientUpserted,
    InquiryReceived,
    InquiryResponse,
    StaffUpserted,
)
from sotto_conversations.config import ConversationsSettings
from sotto_gateway.config import GatewaySettings
from sotto_kit.mongo import Document
from tests.integration.gateway import support
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.support import Watch, adopt_session
from tests.integration.gateway.test_identity import display_name
from tests.support.waiting import eventually

SEND = "notifier.send_notification.v1"


def staff_headers(settings: GatewaySettings, staff_id: str) -> dict[str, str]:
    return support.staff_headers(settings, staff_id, PRACTICE)


async def test_staff_message_reaches_the_client_through_a_secure_link(
    http: httpx.AsyncClient,
    base_url: str,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
) -> None:
    owner = staff_headers(gateway_settings, "owner1")
    clinician = staff_headers(gateway_settings, "clin1")
    patched = await http.patch(
        "/api/staff/settings", json={"client_notification_delay_seconds": 0}, headers=owner
    )
    assert patched.status_code == 200, patched.text

    answer = await http.post(
        "/api/staff/conversations",
        json={
            "conversation_id": "e2e-1",
            "subject": "Next session",
            "client_id": "c1",
            "first_message": "See you Tuesday at 10.",
        },
        headers=clinician,
    )
    assert answer.status_code == 201, answer.text

    thread = await http.get("/api/staff/conversations/e2e-1", headers=clinician)
    assert thread.status_code == 200, thread.text
    assert thread.json()["messages"][0]["body"] == "See you Tuesday at 10."
    note = await http.post(
        "/api/staff/conversations/e2e-1/notes", json={"body": "private note"}, headers=clinician
    )
    assert note.status_code == 201, note.text
    outsider = await http.get(
        "/api/staff/conversations/e2e-1", headers=staff_headers(gateway_settings, "clin2")
    )
    assert outsider.status_code == 404

    [command] = await notifications.wait_for(
        SEND,
        where=lambda body: (
            body["kind"] == NotificationKind.SECURE_MESSAGE_WAITING
            and body["to_address"] == "alex@example.org"
        ),
    )
    assert "Tuesday" not in str(command)
    token = command["link_url"].rsplit("/l/", 1)[1]
    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert verified.status_code == 200, verified.text
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        adopt_session(client, verified)
        seen = await client.get("/api/client/conversations/e2e-1")
        assert seen.status_code == 200, seen.text
        assert seen.json()["messages"][0]["body"] == "See you Tuesday at 10."
        assert "private note" not in seen.text
        replied = await client.post(
            "/api/client/conversations/e2e-1/messages", json={"body": "Works for me"}
        )
        assert replied.status_code == 201, replied.text
        listed = await client.get("/api/client/conversations")
        assert [item["conversation_id"] for item in listed.json()] == ["e2e-1"]

    inbox = await http.get("/api/staff/inbox", headers=clinician)
    assert inbox.status_code == 200, inbox.text
    assert [item["conversation_id"] for item in inbox.json()["items"]] == ["e2e-1"]
    await events.wait_for("gateway.staff_viewed_conversation.v1")


async def test_messaging_switched_off_closes_the_portal_to_the_client_and_their_contacts(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
    broker: support.Broker,
    database: AsyncDatabase[Document],
) -> None:
    await support.sign_in(http, notifications, "sam@example.org")  # Alex's partner
    assert (await http.get("/api/client/conversations")).status_code == 200
    owner = staff_headers(gateway_settings, "owner1")
    off = await http.put("/api/staff/clients/c1/messaging", json={"enabled": False}, headers=owner)
    assert off.status_code == 200, off.text
    people = database["people"]

    async def alex_enabled() -> bool:
        alex = await people.find_one({"_id": f"{PRACTICE}|client|c1"})
        assert alex is not None
        return bool(alex["messaging_enabled"])

    await eventually(alex_enabled, until=lambda on: not on, what="switched off")
    refused = await http.get("/api/client/conversations")
    assert refused.status_code == 403, "a live session reads no more"

    # An ordinary update from the practice system (no switch in it) leaves it off.
    alex: ClientUpserted = world["clients"][0]
    await broker.publish(
        ClientUpserted(
            **alex.model_dump(exclude={"message_id", "occurred_at", "display_name"}),
            display_name="Alex R.",
        )
    )
    name = display_name(people, "c1")
    await eventually(name, until=lambda value: value == "Alex R.", what="update applied")
    assert await alex_enabled() is False

    for address in ("sam@example.org", "alex@example.org", "blair@example.org"):
        answer = await http.post("/api/portal/calm-waters/sign-in", json={"email": address})
        assert answer.status_code == 202
    await notifications.wait_for(SEND, where=lambda body: body["to_address"] == "blair@example.org")
    sent_to = [body["to_address"] for body in notifications.of(SEND)]
    assert "alex@example.org" not in sent_to
    assert sent_to.count("sam@example.org") == 1, "only the sign-in before the switch"


async def test_a_new_client_without_a_switch_follows_the_practices_auto_enable(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    broker: support.Broker,
    database: AsyncDatabase[Document],
) -> None:
    owner = staff_headers(gateway_settings, "owner1")
    patched = await http.patch(
        "/api/staff/settings", json={"auto_enable_new_clients": False}, headers=owner
    )
    assert patched.status_code == 200, patched.text
    await broker.publish(
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="c-new",
            display_name="New Client",
            email="new@example.org",
        )
    )

    async def projected() -> Document | None:
        return await database["people"].find_one({"_id": f"{PRACTICE}|client|c-new"})

    new = await eventually(projected, until=lambda found: found is not None, what="projected")
    assert new is not None
    assert new["messaging_enabled"] is False


async def test_a_team_member_switched_off_stays_off_through_an_ordinary_update(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    broker: support.Broker,
    database: AsyncDatabase[Document],
    mongo: AsyncMongoClient[Document],
    conversations_settings: ConversationsSettings,
) -> None:
    owner = staff_headers(gateway_settings, "owner1")
    off = await http.put("/api/staff/team/clin2/messaging", json={"enabled": False}, headers=owner)
    assert off.status_code == 200, off.text
    clin2: StaffUpserted = next(s for s in world["staff"] if s.staff_id == "clin2")
    await broker.publish(
        StaffUpserted(
            **clin2.model_dump(exclude={"message_id", "occurred_at", "display_name"}),
            display_name="Dr. Blake",
        )
    )

    async def projected() -> Document | None:
        return await database["people"].find_one({"_id": f"{PRACTICE}|staff|clin2"})

    clin2_now = await eventually(
        projected, until=lambda found: found is not None and found["display_name"] == "Dr. Blake"
    )
    assert clin2_now is not None
    assert clin2_now["messaging_enabled"] is False
    conversations_people = mongo[conversations_settings.database]["people"]

    async def in_conversations() -> Document | None:
        return await conversations_people.find_one({"id": "clin2", "practice_id": PRACTICE})

    await eventually(
        in_conversations,
        until=lambda found: found is not None and found["display_name"] == "Dr. Blake",
        what="update applied in conversations",
    )
    opened = await http.post(
        "/api/staff/conversations",
        json={"conversation_id": "off-1", "subject": "Hello", "client_id": "c2"},
        headers=staff_headers(gateway_settings, "clin2"),
    )
    assert opened.status_code == 403, opened.text
    assert opened.json()["code"] == "staff_messaging_disabled"


async def test_a_prospect_gets_the_inquiry_response_by_email_and_the_portal_once_a_client(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    broker: support.Broker,
    database: AsyncDatabase[Document],
) -> None:
    inquiry = InquiryReceived(
        practice_id=PRACTICE,
        inquiry_id="inq-1",
        client_id="prospect-1",
        display_name="Riley Prospect",
        email="riley@example.org",
        body="Do you take new clients?",
    )
    await broker.publish(inquiry)
    await broker.publish(
        InquiryResponse(practice_id=PRACTICE, client_id="prospect-1", reference_id="resp-1")
    )
    [email] = await notifications.wait_for(
        SEND, where=lambda body: body["to_address"] == "riley@example.org"
    )
    assert email["kind"] == NotificationKind.INQUIRY_RESPONSE

    # Not a client yet: no sign-in link (the same answer as for anyone).
    for address in ("riley@example.org", "blair@example.org"):
        answer = await http.post("/api/portal/calm-waters/sign-in", json={"email": address})
        assert answer.status_code == 202
    await notifications.wait_for(SEND, where=lambda body: body["to_address"] == "blair@example.org")
    assert [body["kind"] for body in notifications.of(SEND) if "riley" in body["to_address"]] == [
        NotificationKind.INQUIRY_RESPONSE
    ]

    # The practice system makes them a client (an event older than the inquiry, even).
    await broker.publish(
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="prospect-1",
            display_name="Riley Client",
            email="riley@example.org",
            occurred_at=inquiry.occurred_at - timedelta(minutes=1),
        )
    )
    name = display_name(database["people"], "prospect-1")
    await eventually(name, until=lambda value: value == "Riley Client", what="a client now")
    answer = await http.post("/api/portal/calm-waters/sign-in", json={"email": "riley@example.org"})
    assert answer.status_code == 202
    [link] = await notifications.wait_for(
        SEND,
        where=lambda body: (
            body["to_address"] == "riley@example.org"
            and body["kind"] == NotificationKind.SIGN_IN_LINK
        ),
    )
    token = link["link_url"].rsplit("/sign-in/", 1)[1]
    assert (await http.post(f"/api/portal/sign-in/{token}")).status_code == 200


async def test_an_inquiry_from_someone_not_yet_a_client_opens_for_its_clinician_and_managers(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    broker: support.Broker,
) -> None:
    """A prospect has no client record (none at all when the inquiry gave no address), so no
    team member "has access" to them: who sees the inquiry is conversations' assignment and
    view rules alone."""
    for inquiry_id, email in (("inq-anonymous", None), ("inq-with-address", "sam@example.org")):
        await broker.publish(
            InquiryReceived(
                practice_id=PRACTICE,
                inquiry_id=inquiry_id,
                client_id=f"prospect-{inquiry_id}",
                display_name="Sam Prospect",
                email=email,
                clinician_id="clin2",
                body="Do you see couples?",
            )
        )

    async def inquiries() -> list[dict[str, Any]]:
        answer = await http.get(
            "/api/staff/inbox", headers=staff_headers(gateway_settings, "clin2")
        )
        assert answer.status_code == 200, answer.text
        return [item for item in answer.json()["items"] if item["kind"] == "inquiry"]

    listed = await eventually(inquiries, until=lambda items: len(items) == 2, what="2 inquiries")
    for conversation_id in (item["conversation_id"] for item in listed):
        path = f"/api/staff/conversations/{conversation_id}"
        for staff_id in ("clin2", "owner1", "manager1"):
            answer = await http.get(path, headers=staff_headers(gateway_settings, staff_id))
            assert answer.status_code == 200, (staff_id, answer.text)
            assert answer.json()["messages"][0]["body"] == "Do you see couples?"
        # a clinician it is not assigned to, without permission to view others', sees nothing
        answer = await http.get(path, headers=staff_headers(gateway_settings, "clin1"))
        assert answer.status_code == 404
