"""The gateway with the real conversations service: staff and client flows end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sotto_contracts.common import NotificationKind
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app as create_conversations
from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.support import Watch, adopt_session
from tests.support.serving import serve

SEND = "notifier.send_notification.v1"


@pytest.fixture
async def conversations(make_settings: Callable[..., Any]) -> AsyncIterator[str]:
    settings: ConversationsSettings = make_settings(
        ConversationsSettings, "conversations", reminder_poll_seconds=0.2
    )
    async with serve(create_conversations(settings)) as url:
        yield url


def staff_headers(settings: GatewaySettings, staff_id: str) -> dict[str, str]:
    token = mint_staff_token(
        settings, practice_id=PRACTICE, staff_id=staff_id, lifetime=timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


async def test_staff_message_reaches_the_client_through_a_secure_link(
    conversations: str,
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
