"""The gateway with the real conversations service: staff and client flows end to end."""

from __future__ import annotations

from typing import Any

import httpx

from sotto_contracts.common import NotificationKind
from sotto_gateway.config import GatewaySettings
from tests.integration.gateway import support
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY, PRACTICE
from tests.integration.gateway.support import Watch, adopt_session

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
