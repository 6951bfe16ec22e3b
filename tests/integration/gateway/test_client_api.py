"""Client portal over HTTP: own conversations only, no staff-only data, limits, clear errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.conversations import PracticeSettings, UnreadReminderDue
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.fake_conversations import (
    NOTE_TEXT,
    TASK_TITLE,
    start_fake_services,
)
from tests.integration.gateway.support import Broker, Watch, adopt_session

SEND = "notifier.send_notification.v1"
LIMITED = PracticeSettings(
    client_rate_limit_count=3,
    client_rate_limit_period_seconds=3600,
    max_message_length=50,
    away_message_enabled=True,
    away_message="Out until Monday",
    banner="Welcome",
    edit_note="Not for emergencies",
)


@pytest.fixture
async def fake_services(broker: Broker, base_url: str) -> Broker:
    await start_fake_services(broker, LIMITED)
    return broker


async def sign_in(http: httpx.AsyncClient, notifications: Watch, email: str) -> None:
    await http.post("/api/portal/calm-waters/sign-in", json={"email": email})
    [command] = await notifications.wait_for(SEND, where=lambda b: b["to_address"] == email)
    token = command["link_url"].rsplit("/sign-in/", 1)[1]
    adopt_session(http, await http.post(f"/api/portal/sign-in/{token}"))


async def test_client_reads_and_replies_to_their_own_conversation(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    fake_services: Broker,
    notifications: Watch,
    events: Watch,
) -> None:
    await sign_in(http, notifications, "alex@example.org")
    listed = await http.get("/api/client/conversations")
    assert listed.status_code == 200
    assert [item["conversation_id"] for item in listed.json()] == ["conv1"]

    thread = await http.get("/api/client/conversations/conv1")
    assert thread.status_code == 200
    text = thread.text
    assert NOTE_TEXT not in text
    assert TASK_TITLE not in text
    assert "wants mornings" not in text
    assert "sent in error" not in text
    assert "notes" not in thread.json()
    [read] = fake_services.requests_for("conversations.mark_read.v1")
    assert read["actor"] == {"kind": "client", "id": "c1"}
    await events.wait_for("gateway.client_viewed_conversation.v1")

    reply = await http.post("/api/client/conversations/conv1/messages", json={"body": "Thanks!"})
    assert reply.status_code == 201, reply.text
    [posted] = fake_services.requests_for("conversations.post_message.v1")
    assert posted["actor"] == {"kind": "client", "id": "c1"}

    started = await http.post(
        "/api/client/conversations", json={"subject": "Question", "body": "Can we talk?"}
    )
    assert started.status_code == 201
    [opened] = fake_services.requests_for("conversations.open_conversation.v1")
    assert opened["participants"] == [{"kind": "staff", "id": "clin1"}]
    assert opened["client_id"] == "c1"

    banners = (await http.get("/api/client/banners")).json()
    assert banners == {
        "away_message": "Out until Monday",
        "banner": "Welcome",
        "edit_note": "Not for emergencies",
        "max_message_length": 50,
    }


async def test_another_client_sees_nothing_of_it(
    http: httpx.AsyncClient, world: dict[str, Any], fake_services: Broker, notifications: Watch
) -> None:
    await sign_in(http, notifications, "blair@example.org")
    assert (await http.get("/api/client/conversations")).json() == []
    thread = await http.get("/api/client/conversations/conv1")
    assert thread.status_code == 404
    assert "See you" not in thread.text
    reply = await http.post("/api/client/conversations/conv1/messages", json={"body": "hi"})
    assert reply.status_code == 404


async def test_a_link_session_sees_only_its_conversation(
    http: httpx.AsyncClient,
    broker: Broker,
    world: dict[str, Any],
    fake_services: Broker,
    notifications: Watch,
) -> None:
    await broker.publish(
        UnreadReminderDue(
            practice_id=PRACTICE,
            conversation_id="conv7",
            recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
            posted_message_id="m7",
        )
    )
    [command] = await notifications.wait_for(SEND)
    token = command["link_url"].rsplit("/l/", 1)[1]
    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    adopt_session(http, verified)
    assert (await http.get("/api/client/conversations")).json() == []
    assert (await http.get("/api/client/conversations/conv1")).status_code == 404
    new = await http.post("/api/client/conversations", json={"subject": "x", "body": "y"})
    assert new.status_code == 403


async def test_limits_get_clear_answers(
    http: httpx.AsyncClient, world: dict[str, Any], fake_services: Broker, notifications: Watch
) -> None:
    await sign_in(http, notifications, "alex@example.org")
    path = "/api/client/conversations/conv1/messages"
    too_long = await http.post(path, json={"body": "x" * 51})
    assert too_long.status_code == 422
    assert too_long.json()["code"] == "message_too_long"
    too_large = await http.post(path, json={"body": "x" * 70_000})
    assert too_large.status_code == 413
    assert too_large.headers["content-type"].startswith("application/problem+json")
    answers = [(await http.post(path, json={"body": f"note {n}"})).status_code for n in range(4)]
    assert answers == [201, 201, 201, 429]
    limited = await http.post(path, json={"body": "again"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.json()["code"] == "rate_limited"
    assert len(fake_services.requests_for("conversations.post_message.v1")) == 3
