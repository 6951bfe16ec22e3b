"""Client portal over HTTP against the real conversations service: own conversations only,
never staff-only data, link sessions scoped to one conversation, limits, sign-out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import NotificationKind, StaffRole
from sotto_contracts.inbound import ClientUpserted, StaffUpserted
from sotto_conversations.adapters.store import person_id
from sotto_conversations.config import ConversationsSettings
from sotto_gateway.config import GatewaySettings
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.support import (
    SEND,
    Broker,
    Watch,
    adopt_session,
    sign_in,
    staff_headers,
)
from tests.support.waiting import eventually

FIRST = "See you Tuesday at 10."
NOTE_TEXT = "internal note: anxious about the move"
TASK_TITLE = "call back about intake forms"
REMOVED = "sent in error: wrong client"
PORTAL_SETTINGS = {
    "away_message_enabled": True,
    "away_message": "Out until Monday",
    "banner": "Welcome",
    "edit_note": "Not for emergencies",
}


async def staff_call(
    http: httpx.AsyncClient,
    settings: GatewaySettings,
    staff_id: str,
    method: str,
    path: str,
    body: Any = None,
) -> Any:
    answer = await http.request(
        method, path, json=body, headers=staff_headers(settings, staff_id, PRACTICE)
    )
    assert answer.status_code in (200, 201), (method, path, answer.status_code, answer.text)
    return answer.json()


async def open_conversation(
    http: httpx.AsyncClient, settings: GatewaySettings, conversation_id: str, first: str = FIRST
) -> None:
    await staff_call(
        http,
        settings,
        "clin1",
        "POST",
        "/api/staff/conversations",
        {
            "conversation_id": conversation_id,
            "subject": f"About {conversation_id}",
            "client_id": "c1",
            "first_message": first,
        },
    )


@pytest.fixture
async def portal(base_url: str) -> Any:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        yield client


async def test_client_reads_and_replies_to_their_own_conversation(
    http: httpx.AsyncClient,
    portal: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
) -> None:
    await staff_call(
        http, gateway_settings, "owner1", "PATCH", "/api/staff/settings", PORTAL_SETTINGS
    )
    await open_conversation(http, gateway_settings, "conv1")
    conversation = "/api/staff/conversations/conv1"
    for path, body in (
        ("notes", {"body": NOTE_TEXT}),
        ("tasks", {"title": TASK_TITLE, "task_id": "t1"}),
        ("messages", {"body": REMOVED, "message_id": "m2"}),
    ):
        await staff_call(http, gateway_settings, "clin1", "POST", f"{conversation}/{path}", body)
    await staff_call(http, gateway_settings, "clin1", "DELETE", f"{conversation}/messages/m2")

    await sign_in(portal, notifications, "alex@example.org")
    session = (await portal.get("/api/client/session")).json()
    assert session == {
        "principal": {"kind": "client", "id": "c1"},
        "practice_name": "Calm Waters",
        "practice_slug": "calm-waters",
        "conversation_id": None,
        "identities": [
            {
                "principal": {"kind": "client", "id": "c1"},
                "display_name": "Alex Rivera",
                "on_behalf_of": None,
            }
        ],
    }
    listed = (await portal.get("/api/client/conversations")).json()
    assert [(item["conversation_id"], item["unread"]) for item in listed] == [("conv1", True)]

    thread = await portal.get("/api/client/conversations/conv1")
    assert thread.status_code == 200, thread.text
    assert [(m["body"], m["removed"]) for m in thread.json()["messages"]] == [
        (FIRST, False),
        ("", True),
    ]
    for secret in (NOTE_TEXT, TASK_TITLE, REMOVED):
        assert secret not in thread.text
    assert "notes" not in thread.json()
    assert "tasks" not in thread.json()
    assert thread.json()["banner"] == "Welcome"
    assert thread.json()["away_message"] == "Out until Monday"
    [viewed] = await events.wait_for("gateway.client_viewed_conversation.v1")
    assert viewed["principal"] == {"kind": "client", "id": "c1"}
    listed = (await portal.get("/api/client/conversations")).json()
    assert [item["unread"] for item in listed] == [False]

    reply = await portal.post("/api/client/conversations/conv1/messages", json={"body": "Thanks!"})
    assert reply.status_code == 201, reply.text
    staff_view = await staff_call(http, gateway_settings, "clin1", "GET", conversation)
    assert [
        m["body"] for m in staff_view["messages"] if m["sender"] == {"kind": "client", "id": "c1"}
    ] == ["Thanks!"]

    started = await portal.post(
        "/api/client/conversations",
        json={"conversation_id": "conv-new", "subject": "Question", "body": "Can we talk?"},
    )
    assert started.status_code == 201, started.text
    opened = await staff_call(
        http, gateway_settings, "clin1", "GET", "/api/staff/conversations/conv-new"
    )
    assert opened["conversation"]["assignee_id"] == "clin1"
    assert opened["messages"][0]["body"] == "Can we talk?"
    listed = (await portal.get("/api/client/conversations")).json()
    assert sorted(item["conversation_id"] for item in listed) == ["conv-new", "conv1"]

    assert (await portal.get("/api/client/banners")).json() == {
        "away_message": "Out until Monday",
        "banner": "Welcome",
        "edit_note": "Not for emergencies",
        "max_message_length": 5000,
    }

    signed_out = await portal.post("/api/client/sign-out")
    assert signed_out.status_code == 204
    assert (await portal.get("/api/client/session")).status_code == 401
    gone = await portal.get("/api/client/conversations/conv1")
    assert gone.status_code == 401
    assert FIRST not in gone.text


async def test_a_link_session_sees_only_its_conversation(
    http: httpx.AsyncClient,
    portal: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
) -> None:
    await staff_call(
        http,
        gateway_settings,
        "owner1",
        "PATCH",
        "/api/staff/settings",
        {"client_notification_delay_seconds": 0},
    )
    await open_conversation(http, gateway_settings, "conv1")
    await open_conversation(http, gateway_settings, "conv2", "A different matter")
    [command] = await notifications.wait_for(
        SEND,
        where=lambda body: (
            body["kind"] == NotificationKind.SECURE_MESSAGE_WAITING
            and body["conversation_id"] == "conv1"
            and body["to_address"] == "alex@example.org"
        ),
    )
    token = command["link_url"].rsplit("/l/", 1)[1]
    opened = await portal.post(f"/api/client/links/{token}/open")
    assert opened.json()["status"] == "needs_verification"
    verified = await portal.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert verified.status_code == 200, verified.text
    adopt_session(portal, verified)

    listed = (await portal.get("/api/client/conversations")).json()
    assert [item["conversation_id"] for item in listed] == ["conv1"]
    thread = await portal.get("/api/client/conversations/conv1")
    assert thread.json()["messages"][0]["body"] == FIRST
    other = await portal.get("/api/client/conversations/conv2")
    assert other.status_code == 404
    assert "A different matter" not in other.text
    assert (
        await portal.post("/api/client/conversations/conv2/messages", json={"body": "hi"})
    ).status_code == 404
    new = await portal.post("/api/client/conversations", json={"subject": "x", "body": "y"})
    assert new.status_code == 403
    assert new.json()["code"] == "sign_in_required"
    recipients = await portal.get("/api/client/recipients")
    assert recipients.status_code == 403
    assert recipients.json()["code"] == "sign_in_required"

    # Removing the message the link was sent for revokes the link; both sides see it removed.
    first_id = thread.json()["messages"][0]["message_id"]
    await staff_call(
        http,
        gateway_settings,
        "clin1",
        "DELETE",
        f"/api/staff/conversations/conv1/messages/{first_id}",
    )

    async def reopened() -> httpx.Response:
        return await portal.post(f"/api/client/links/{token}/open")

    revoked = await eventually(reopened, until=lambda answer: answer.status_code == 410)
    assert revoked.json()["code"] == "link_revoked"
    seen = (await portal.get("/api/client/conversations/conv1")).json()
    assert [(m["body"], m["removed"]) for m in seen["messages"]] == [("", True)]


async def test_limits_get_clear_answers(
    http: httpx.AsyncClient,
    portal: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
) -> None:
    await staff_call(
        http,
        gateway_settings,
        "manager1",
        "PATCH",
        "/api/staff/settings",
        {"client_rate_limit_count": 3, "max_message_length": 50},
    )
    await open_conversation(http, gateway_settings, "conv1")
    await sign_in(portal, notifications, "alex@example.org")
    assert (await portal.get("/api/client/banners")).json()["max_message_length"] == 50
    path = "/api/client/conversations/conv1/messages"
    too_long = await portal.post(path, json={"body": "x" * 51})
    assert too_long.status_code == 422
    assert too_long.json()["code"] == "message_too_long"
    too_large = await portal.post(path, json={"body": "x" * 70_000})
    assert too_large.status_code == 413
    assert too_large.headers["content-type"].startswith("application/problem+json")
    answers = [(await portal.post(path, json={"body": f"note {n}"})).status_code for n in range(4)]
    assert answers == [201, 201, 201, 429]
    limited = await portal.post(path, json={"body": "again"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.json()["code"] == "rate_limited"
    thread = await staff_call(
        http, gateway_settings, "clin1", "GET", "/api/staff/conversations/conv1"
    )
    sent = [m["body"] for m in thread["messages"] if m["sender"]["kind"] == "client"]
    assert sent == ["note 0", "note 1", "note 2"]


async def test_client_chooses_whom_to_start_with_and_conversations_refuses_the_rest(
    http: httpx.AsyncClient,
    portal: httpx.AsyncClient,
    base_url: str,
    broker: Broker,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
    mongo: AsyncMongoClient[Document],
    conversations_settings: ConversationsSettings,
) -> None:
    more = [
        StaffUpserted(
            practice_id=PRACTICE,
            staff_id="sched1",
            display_name="Avery Scheduler",
            email="sched1@staff.example.org",
            roles=[StaffRole.SCHEDULER],
        ),
        StaffUpserted(
            practice_id=PRACTICE,
            staff_id="sched2",
            display_name="Quiet Scheduler",
            email="sched2@staff.example.org",
            roles=[StaffRole.SCHEDULER],
            messaging_enabled=False,
        ),
        StaffUpserted(
            practice_id=PRACTICE,
            staff_id="manager2",
            display_name="Gone Manager",
            email="manager2@staff.example.org",
            roles=[StaffRole.PRACTICE_MANAGER],
            active=False,
        ),
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="c3",
            display_name="Casey Noclin",
            email="casey@example.org",
            date_of_birth=CLIENT_BIRTHDAY,
        ),
    ]
    for event in more:
        await broker.publish(event)

    async def team() -> set[str]:
        members = await staff_call(http, gateway_settings, "owner1", "GET", "/api/staff/team")
        return {member["staff_id"] for member in members}

    await eventually(team, until=lambda ids: {"sched1", "sched2"} <= ids, what="schedulers")
    # Casey's record comes on another of the gateway's queues, and conversations, which gives
    # the answers below, reads the same events from its own queue.
    await eventually(
        lambda: database["people"].count_documents({"_id": f"{PRACTICE}|client|c3"}),
        until=lambda count: count == 1,
        what="Casey projected",
    )
    conversations_people = mongo[conversations_settings.database]["people"]
    sched2_and_casey = [person_id(PRACTICE, "staff", "sched2"), person_id(PRACTICE, "client", "c3")]
    await eventually(
        lambda: conversations_people.count_documents({"_id": {"$in": sched2_and_casey}}),
        until=lambda count: count == 2,
        what="sched2 and Casey in conversations",
    )

    await sign_in(portal, notifications, "alex@example.org")
    listed = await portal.get("/api/client/recipients")
    assert listed.status_code == 200, listed.text
    assert listed.json() == [
        {"staff_id": "clin1", "display_name": "Clin1", "role": "primary_clinician"},
        {"staff_id": "sched1", "display_name": "Avery Scheduler", "role": "scheduler"},
        {"staff_id": "biller1", "display_name": "Biller1", "role": "biller"},
        {"staff_id": "biller2", "display_name": "Biller2", "role": "biller"},
        {"staff_id": "manager1", "display_name": "Manager1", "role": "practice_manager"},
    ]
    assert "@" not in listed.text

    started = await portal.post(
        "/api/client/conversations",
        json={"subject": "Invoice", "body": "A question on my bill", "recipient_id": "biller1"},
    )
    assert started.status_code == 201, started.text
    conversation_id = started.json()["result"]["conversation"]["conversation_id"]
    opened = await staff_call(
        http, gateway_settings, "biller1", "GET", f"/api/staff/conversations/{conversation_id}"
    )
    assert opened["conversation"]["assignee_id"] == "biller1"
    assert opened["messages"][0]["body"] == "A question on my bill"

    # conversations stays the authority: another clinician, a switched-off, a gone or an
    # unknown team member are refused with its own answers
    for recipient, status, code in (
        ("clin2", 403, "client_may_not_start_with_staff"),
        ("owner1", 403, "client_may_not_start_with_staff"),
        ("sched2", 403, "staff_messaging_disabled"),
        ("manager2", 422, "unknown_participant"),
        ("nobody", 422, "unknown_participant"),
    ):
        refused = await portal.post(
            "/api/client/conversations",
            json={"subject": "Hi", "body": "Hello", "recipient_id": recipient},
        )
        assert (refused.status_code, refused.json()["code"]) == (status, code), recipient

    # a client without a primary clinician may still write to managers, billers, schedulers
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as casey:
        await sign_in(casey, notifications, "casey@example.org")
        reachable = (await casey.get("/api/client/recipients")).json()
        assert [r["staff_id"] for r in reachable] == ["sched1", "biller1", "biller2", "manager1"]
        nobody_chosen = await casey.post(
            "/api/client/conversations", json={"subject": "Hi", "body": "Hello"}
        )
        assert nobody_chosen.status_code == 409
        assert nobody_chosen.json()["code"] == "no_primary_clinician"
        chosen = await casey.post(
            "/api/client/conversations",
            json={"subject": "Hi", "body": "Hello", "recipient_id": "manager1"},
        )
        assert chosen.status_code == 201, chosen.text

    # a contact may reply but not start: nobody to choose
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as sam:
        await sign_in(sam, notifications, "sam@example.org")
        assert (await sam.get("/api/client/recipients")).json() == []
