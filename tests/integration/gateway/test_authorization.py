"""Authorization matrix: every staff and client endpoint, called by a foreign client, by staff
of another practice, and by a team member whose role lacks the permission. None gets data.

One practice is seeded once for the module (real gateway, conversations and audit services):
Alex's conversation conv1 with clin1, a message m1, a note and a task t1.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app as create_audit
from sotto_contracts.topology import Topology
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app as create_conversations
from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app as create_gateway
from sotto_kit.mongo import connect
from tests.integration.gateway.conftest import (
    AUDIT_OVERRIDES,
    CONVERSATIONS_OVERRIDES,
    GATEWAY_OVERRIDES,
    OTHER_PRACTICE,
    PRACTICE,
    seed_world,
)
from tests.integration.gateway.endpoints import (
    ANNOUNCEMENT_ID,
    CLIENT_ENDPOINTS,
    CONVERSATION,
    STAFF_ENDPOINTS,
    Endpoint,
    Needs,
)
from tests.integration.gateway.support import Broker, sign_in, staff_headers
from tests.support.amqp import delete_namespace
from tests.support.infra import Infrastructure, heal_local_broker
from tests.support.serving import serve

FIRST = "Tuesday works, see you at ten"
SECOND = "Remember the intake questionnaire"
NOTE_TEXT = "private: worried about relapse"
TASK_TITLE = "phone the insurer about Alex"
SUBJECT = "Scheduling worries"
SEEDED = (
    "Alex Rivera",
    "Sam Rivera",
    "alex@example.org",
    FIRST,
    SECOND,
    NOTE_TEXT,
    TASK_TITLE,
    SUBJECT,
)


@dataclass
class Seeded:
    """The module's running services and one HTTP client per kind of caller."""

    settings: GatewaySettings
    staff: httpx.AsyncClient
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    async def as_staff(self, staff_id: str, practice_id: str, endpoint: Endpoint) -> httpx.Response:
        return await self.staff.request(
            endpoint.method,
            endpoint.path,
            json=endpoint.body,
            headers=staff_headers(self.settings, staff_id, practice_id),
        )

    async def as_client(self, who: str, endpoint: Endpoint) -> httpx.Response:
        return await self.clients[who].request(endpoint.method, endpoint.path, json=endpoint.body)


@pytest.fixture(scope="module")
async def seeded(infra: Infrastructure, used_namespaces: set[str]) -> AsyncIterator[Seeded]:
    heal_local_broker(infra)
    namespace = f"t{uuid.uuid4().hex[:12]}"
    used_namespaces.add(namespace)

    def settings(kind: type[Any], service: str, **overrides: Any) -> Any:
        return kind(
            rabbitmq_url=infra.rabbitmq_url,
            mongodb_url=infra.mongodb_url,
            namespace=namespace,
            delivery_limit=5,
            database=f"{namespace}_{service}",
            outbox_interval_seconds=0.2,
            **overrides,
        )

    try:
        async with AsyncExitStack() as stack:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            gateway_settings: GatewaySettings = settings(
                GatewaySettings, "gateway", state_dir=state, **GATEWAY_OVERRIDES
            )
            conversations: ConversationsSettings = settings(
                ConversationsSettings, "conversations", **CONVERSATIONS_OVERRIDES
            )
            audit: AuditSettings = settings(AuditSettings, "audit", **AUDIT_OVERRIDES)
            await stack.enter_async_context(serve(create_conversations(conversations)))
            await stack.enter_async_context(serve(create_audit(audit)))
            base_url = await stack.enter_async_context(serve(create_gateway(gateway_settings)))

            broker = Broker(infra.rabbitmq_url, Topology(namespace=namespace, delivery_limit=5))
            stack.push_async_callback(broker.close)
            mongo = connect(infra.mongodb_url)
            stack.push_async_callback(mongo.close)
            notifications = await broker.watch(broker.topology.commands.name, "notifier.#")
            await seed_world(
                broker, mongo[gateway_settings.database], mongo[conversations.database]
            )

            def client() -> httpx.AsyncClient:
                return httpx.AsyncClient(base_url=base_url, timeout=15)

            staff = await stack.enter_async_context(client())
            world = Seeded(gateway_settings, staff)
            await _seed_conversation(world)
            for who, email, slug in (
                ("alex", "alex@example.org", "calm-waters"),
                ("blair", "blair@example.org", "calm-waters"),
                ("sam", "sam@example.org", "calm-waters"),
                ("other-practice", "other@example.org", "far-away"),
            ):
                world.clients[who] = await stack.enter_async_context(client())
                await sign_in(world.clients[who], notifications, email, slug)
            yield world
    finally:
        delete_namespace(infra.rabbitmq_management_url, namespace)


async def _seed_conversation(world: Seeded) -> None:
    async def post(path: str, body: dict[str, Any]) -> None:
        answer = await world.staff.post(
            path, json=body, headers=staff_headers(world.settings, "clin1", PRACTICE)
        )
        assert answer.status_code == 201, answer.text

    await post(
        "/api/staff/conversations",
        {"conversation_id": "conv1", "subject": SUBJECT, "client_id": "c1", "first_message": FIRST},
    )
    await post(f"{CONVERSATION}/messages", {"body": SECOND, "message_id": "m1"})
    await post(f"{CONVERSATION}/notes", {"body": NOTE_TEXT})
    await post(f"{CONVERSATION}/tasks", {"title": TASK_TITLE, "task_id": "t1"})
    announced = await world.staff.post(
        "/api/staff/announcements",
        json={
            "announcement_id": ANNOUNCEMENT_ID,
            "subject": "Running late",
            "body": "Starting at ten today",
            "clinician_id": "clin1",
        },
        headers=staff_headers(world.settings, "clin1", PRACTICE),
    )
    assert announced.status_code == 202, announced.text


def assert_no_seeded_data(answer: httpx.Response) -> None:
    text = answer.content.decode(errors="replace")
    leaked = [value for value in SEEDED if value in text]
    assert not leaked, (answer.status_code, leaked, text[:500])


# Who lacks each permission: clin2 has no access to Alex; the biller does not manage the
# practice; the manager is not the owner and has no export permission.
WITHOUT_PERMISSION: dict[Needs, tuple[str, set[int]]] = {
    Needs.NOTHING: ("clin2", {200}),
    Needs.THREAD: ("clin2", {404}),
    Needs.CLIENT: ("clin2", {404}),
    Needs.OTHERS: ("clin2", {403}),
    Needs.MANAGER: ("biller1", {403}),
    Needs.OWNER: ("manager1", {403}),
    Needs.ANNOUNCER: ("clin2", {404}),
    Needs.EXPORT: ("manager1", {403}),
}


def other_practice_answers(endpoint: Endpoint) -> set[int]:
    """Another practice's owner: 404 for anything of this practice; endpoints about the
    caller's own practice answer about theirs (and so show nothing of this one)."""
    if endpoint.needs in (Needs.THREAD, Needs.CLIENT, Needs.ANNOUNCER) or "/c1/" in endpoint.path:
        return {404}
    if "/team/clin1/" in endpoint.path:
        return {404}
    if endpoint.needs is Needs.EXPORT:
        return {403}  # owner9 has no export permission
    return {200, 201, 202}


@pytest.mark.parametrize("endpoint", STAFF_ENDPOINTS, ids=lambda endpoint: endpoint.id)
async def test_a_client_session_gets_nothing_from_the_staff_api(
    seeded: Seeded, endpoint: Endpoint
) -> None:
    answer = await seeded.as_client("blair", endpoint)
    assert answer.status_code == 401, answer.text
    assert_no_seeded_data(answer)
    own = await seeded.as_client("alex", endpoint)
    assert own.status_code == 401, own.text
    assert_no_seeded_data(own)


@pytest.mark.parametrize("endpoint", STAFF_ENDPOINTS, ids=lambda endpoint: endpoint.id)
async def test_another_practices_staff_get_nothing(seeded: Seeded, endpoint: Endpoint) -> None:
    answer = await seeded.as_staff("owner9", OTHER_PRACTICE, endpoint)
    assert answer.status_code in other_practice_answers(endpoint), answer.text
    assert_no_seeded_data(answer)
    spoofed = await seeded.as_staff("owner1", OTHER_PRACTICE, endpoint)
    assert spoofed.status_code == 401, spoofed.text  # owner1 is not on that practice's team


@pytest.mark.parametrize("endpoint", STAFF_ENDPOINTS, ids=lambda endpoint: endpoint.id)
async def test_a_role_without_the_permission_gets_nothing(
    seeded: Seeded, endpoint: Endpoint
) -> None:
    staff_id, statuses = WITHOUT_PERMISSION[endpoint.needs]
    answer = await seeded.as_staff(staff_id, PRACTICE, endpoint)
    assert answer.status_code in statuses, (staff_id, answer.status_code, answer.text)
    assert_no_seeded_data(answer)


CLIENT_CALLERS = {
    "blair": "another client of the practice",
    "sam": "Alex's partner, not in the conversation",
    "other-practice": "a client of another practice",
}


@pytest.mark.parametrize("who", sorted(CLIENT_CALLERS))
@pytest.mark.parametrize("endpoint", CLIENT_ENDPOINTS, ids=lambda endpoint: endpoint.id)
async def test_other_clients_get_nothing_from_a_clients_conversation(
    seeded: Seeded, endpoint: Endpoint, who: str
) -> None:
    answer = await seeded.as_client(who, endpoint)
    expected = {200} if endpoint.needs is Needs.NOTHING else {404}
    assert answer.status_code in expected, (who, answer.status_code, answer.text)
    assert_no_seeded_data(answer)
    if endpoint.needs is Needs.NOTHING:
        assert "conv1" not in answer.text


@pytest.mark.parametrize("endpoint", CLIENT_ENDPOINTS, ids=lambda endpoint: endpoint.id)
async def test_staff_tokens_get_nothing_from_the_client_api(
    seeded: Seeded, endpoint: Endpoint
) -> None:
    for staff_id, practice_id in (("owner9", OTHER_PRACTICE), ("owner1", PRACTICE)):
        answer = await seeded.as_staff(staff_id, practice_id, endpoint)
        assert answer.status_code == 401, answer.text
        assert_no_seeded_data(answer)


async def test_nothing_changed_and_the_client_still_sees_their_conversation(
    seeded: Seeded,
) -> None:
    """Runs after the matrix: none of the refused calls changed anything."""
    headers = staff_headers(seeded.settings, "clin1", PRACTICE)
    thread = (await seeded.staff.get(CONVERSATION, headers=headers)).json()
    assert [(m["body"], m["removed"]) for m in thread["messages"]] == [
        (FIRST, False),
        (SECOND, False),
    ]
    assert [note["body"] for note in thread["notes"]] == [NOTE_TEXT]
    assert [(task["title"], task["done"]) for task in thread["tasks"]] == [(TASK_TITLE, False)]
    assert thread["conversation"]["archived"] is False
    assert thread["conversation"]["assignee_id"] == "clin1"
    settings = (await seeded.staff.get("/api/staff/settings", headers=headers)).json()
    assert settings["banner"] != "Closed Friday"
    own = await seeded.clients["alex"].get("/api/client/conversations/conv1")
    assert own.status_code == 200, own.text
    assert [m["body"] for m in own.json()["messages"]] == [FIRST, SECOND]


@pytest.mark.parametrize("staff_id", ["biller2", "owner9"])
async def test_exports_are_for_managers_with_the_export_permission(
    seeded: Seeded, staff_id: str
) -> None:
    """The gateway refuses by itself (as conversations would): a biller holding the export
    flag does not manage the practice, and an owner without the flag may not export."""
    export = next(e for e in STAFF_ENDPOINTS if e.needs is Needs.EXPORT)
    practice_id = OTHER_PRACTICE if staff_id == "owner9" else PRACTICE
    answer = await seeded.as_staff(staff_id, practice_id, export)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "forbidden"
    me = await seeded.as_staff(staff_id, practice_id, STAFF_ENDPOINTS[0])
    assert me.json()["can_export"] is False


async def test_a_team_member_without_access_to_the_client_is_not_added_to_its_thread(
    seeded: Seeded,
) -> None:
    """Otherwise clin2, a participant conversations would show the thread to, could read and
    change its tasks through PATCH /api/staff/tasks/{id} (which names no conversation), while
    the gateway hides the thread from clin2 everywhere else."""
    clinician = staff_headers(seeded.settings, "clin1", PRACTICE)
    opened = await seeded.staff.post(
        "/api/staff/conversations",
        json={
            "conversation_id": "conv-shared",
            "subject": SUBJECT,
            "client_id": "c1",
            "participants": [{"kind": "staff", "id": "clin2"}],
            "first_message": FIRST,
        },
        headers=clinician,
    )
    assert opened.status_code == 422, opened.text
    assert opened.json()["code"] == "participant_without_access"
    assert_no_seeded_data(opened)
    missing = await seeded.staff.get("/api/staff/conversations/conv-shared", headers=clinician)
    assert missing.status_code == 404
    with_biller = await seeded.staff.post(
        "/api/staff/conversations",
        json={
            "conversation_id": "conv-billing",
            "subject": "Statement",
            "client_id": "c1",
            "participants": [{"kind": "staff", "id": "biller1"}],
        },
        headers=clinician,
    )
    assert with_biller.status_code == 201, with_biller.text
