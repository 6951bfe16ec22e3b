"""Staff API over HTTP: every workflow reaches conversations for the right actor; access matrix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sotto_contracts.conversations import PracticeSettings
from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings
from tests.integration.gateway.conftest import OTHER_PRACTICE, PRACTICE
from tests.integration.gateway.fake_conversations import NOTE_TEXT, start_fake_services
from tests.integration.gateway.support import Broker, Watch

CONVERSATION = "/api/staff/conversations/conv1"

STAFF_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/staff/inbox", None),
    ("POST", "/api/staff/conversations", {"subject": "Hello", "client_id": "c1"}),
    ("GET", CONVERSATION, None),
    ("POST", f"{CONVERSATION}/messages", {"body": "Hi there"}),
    ("POST", f"{CONVERSATION}/assign", {"assignee_id": "clin1"}),
    ("POST", f"{CONVERSATION}/archive", None),
    ("POST", f"{CONVERSATION}/unarchive", None),
    ("POST", f"{CONVERSATION}/unread", None),
    ("POST", f"{CONVERSATION}/notes", {"body": "a note"}),
    ("POST", f"{CONVERSATION}/tasks", {"title": "a task"}),
    ("DELETE", f"{CONVERSATION}/messages/m1", None),
    ("POST", f"{CONVERSATION}/copy", {"message_ids": ["m1"]}),
    ("GET", "/api/staff/clients/c1/transcript", None),
]
MANAGER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "/api/staff/settings", {"banner": "Closed Friday"}),
    ("PUT", "/api/staff/clients/c1/messaging", {"enabled": True}),
    ("PUT", "/api/staff/team/clin1/messaging", {"enabled": True}),
    ("POST", "/api/staff/announcements", {"subject": "Holiday", "body": "Closed Friday"}),
]
OWNER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/staff/audit/deliveries", None),
    ("GET", "/api/staff/audit/access", None),
    ("POST", "/api/staff/exports", {}),
]
OPEN_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/staff/me", None),
    ("GET", "/api/staff/settings", None),
    ("PATCH", "/api/staff/tasks/t1", {"done": True}),
]
EVERY_ENDPOINT = STAFF_ENDPOINTS + MANAGER_ENDPOINTS + OWNER_ENDPOINTS + OPEN_ENDPOINTS


@pytest.fixture
async def fake_services(broker: Broker, base_url: str) -> Broker:
    await start_fake_services(broker, PracticeSettings())
    return broker


def token_for(settings: GatewaySettings, staff_id: str, practice_id: str = PRACTICE) -> str:
    return mint_staff_token(
        settings, practice_id=practice_id, staff_id=staff_id, lifetime=timedelta(minutes=5)
    )


async def call(
    http: httpx.AsyncClient, token: str | None, method: str, path: str, body: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.request(method, path, json=body, headers=headers)


async def test_every_staff_workflow_reaches_conversations_as_the_team_member(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    fake_services: Broker,
    events: Watch,
) -> None:
    token = token_for(gateway_settings, "owner1")
    for method, path, body in EVERY_ENDPOINT:
        answer = await call(http, token, method, path, body)
        assert answer.status_code < 300, (method, path, answer.status_code, answer.text)

    thread = await call(http, token, "GET", CONVERSATION, None)
    assert thread.json()["notes"][0]["body"] == NOTE_TEXT
    export = await call(http, token, "POST", "/api/staff/exports", {"password": "longenough"})
    assert export.content == b"PK-archive"
    assert export.headers["content-disposition"] == 'attachment; filename="export.zip"'
    [made, *_] = await events.wait_for("gateway.export_made.v1", count=2)
    assert made["staff_id"] == "owner1"
    viewed = await events.wait_for("gateway.staff_viewed_conversation.v1")
    assert viewed[0]["client_id"] == "c1"

    posted = fake_services.requests_for("conversations.post_message.v1")
    assert posted[0]["actor"] == {"kind": "staff", "id": "owner1"}
    assert posted[0]["practice_id"] == PRACTICE
    assert posted[0]["body"] == "Hi there"
    me = await call(http, token, "GET", "/api/staff/me", None)
    assert me.json()["roles"] == ["owner"]


async def test_without_a_valid_token_nothing_is_answered(
    http: httpx.AsyncClient, world: dict[str, Any], fake_services: Broker
) -> None:
    stranger_key = Ed25519PrivateKey.generate()
    forged = jwt.encode(
        {
            "sub": "owner1",
            "practice_id": PRACTICE,
            "iss": "sotto-dev",
            "aud": "sotto-staff",
            "exp": 4102444800,
        },
        stranger_key,
        algorithm="EdDSA",
    )
    for token in (None, "not-a-jwt", forged):
        for method, path, body in EVERY_ENDPOINT:
            answer = await call(http, token, method, path, body)
            assert answer.status_code == 401, (token, method, path)
            assert answer.headers["content-type"].startswith("application/problem+json")
    assert fake_services.requests == []


async def test_another_practices_owner_sees_nothing(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    fake_services: Broker,
) -> None:
    token = token_for(gateway_settings, "owner9", OTHER_PRACTICE)
    for method, path, body in STAFF_ENDPOINTS[1:]:
        answer = await call(http, token, method, path, body)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
        assert "Alex" not in answer.text
    spoofed = token_for(gateway_settings, "owner1", OTHER_PRACTICE)
    assert (await call(http, spoofed, "GET", CONVERSATION, None)).status_code == 401


async def test_clinician_without_access_to_the_client_sees_nothing(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    fake_services: Broker,
) -> None:
    token = token_for(gateway_settings, "clin2")
    for method, path, body in STAFF_ENDPOINTS[1:]:
        answer = await call(http, token, method, path, body)
        assert answer.status_code == 404, (method, path, answer.status_code)
        assert NOTE_TEXT not in answer.text
    assert fake_services.requests_for("conversations.post_message.v1") == []
    others = await call(http, token, "GET", "/api/staff/inbox?view=others", None)
    assert others.status_code == 403


async def test_roles_without_permission_are_refused(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    fake_services: Broker,
) -> None:
    biller = token_for(gateway_settings, "biller1")
    manager = token_for(gateway_settings, "manager1")
    for method, path, body in MANAGER_ENDPOINTS + OWNER_ENDPOINTS:
        answer = await call(http, biller, method, path, body)
        assert answer.status_code == 403, (method, path, answer.status_code)
    for method, path, body in OWNER_ENDPOINTS:
        assert (await call(http, manager, method, path, body)).status_code == 403
    for method, path, body in MANAGER_ENDPOINTS:
        assert (await call(http, manager, method, path, body)).status_code < 300
    assert fake_services.requests_for("audit.get_access_log.v1") == []
    assert fake_services.requests_for("conversations.export_practice.v1") == []
    biller_reads = await call(http, biller, "GET", CONVERSATION, None)
    assert biller_reads.status_code == 200
