"""Staff API over HTTP against the real conversations and audit services: every endpoint's
happy path, with the effect checked in a following read."""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import pyzipper  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.inbound import ClientUpserted
from sotto_conversations.config import ConversationsSettings
from sotto_gateway.config import GatewaySettings
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import CONVERSATIONS_OVERRIDES, PRACTICE
from tests.integration.gateway.endpoints import STAFF_ENDPOINTS
from tests.integration.gateway.support import Broker, Watch, sign_in, staff_headers
from tests.support.waiting import eventually

CONVERSATION = "/api/staff/conversations/conv1"
ANNOUNCEMENTS = "/api/staff/announcements"
BULK_CLIENTS = 34
NOTE_TEXT = "internal note: anxious about the move"
TASK_TITLE = "call back about intake forms"
FIRST = "See you Tuesday at 10."


class Staff:
    """A team member's view of the API: their token on every call."""

    def __init__(self, http: httpx.AsyncClient, settings: GatewaySettings, staff_id: str) -> None:
        self.http = http
        self.headers = staff_headers(settings, staff_id, PRACTICE)

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return await self.http.request(
            method, path, json=body, params=params or None, headers=self.headers
        )

    async def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        answer = await self.call(method, path, body, **params)
        assert answer.status_code in (200, 201), (method, path, answer.status_code, answer.text)
        return answer.json()

    async def inbox(self, **params: Any) -> list[str]:
        page = await self.ok("GET", "/api/staff/inbox", **params)
        return [item["conversation_id"] for item in page["items"]]


@pytest.fixture
def conversations_settings(make_settings: Callable[..., Any]) -> ConversationsSettings:
    """Announcements in small batches, so even a small practice's takes several."""
    settings: ConversationsSettings = make_settings(
        ConversationsSettings,
        "conversations",
        **CONVERSATIONS_OVERRIDES,
        announcement_batch_size=3,
        announcement_poll_seconds=0.05,
    )
    return settings


@pytest.fixture
def clinician(http: httpx.AsyncClient, gateway_settings: GatewaySettings) -> Staff:
    return Staff(http, gateway_settings, "clin1")


@pytest.fixture
def owner(http: httpx.AsyncClient, gateway_settings: GatewaySettings) -> Staff:
    return Staff(http, gateway_settings, "owner1")


@pytest.fixture
async def opened(world: dict[str, Any], clinician: Staff) -> dict[str, Any]:
    """conv1: clin1 and their client Alex, with a first message."""
    created: dict[str, Any] = await clinician.ok(
        "POST",
        "/api/staff/conversations",
        {
            "conversation_id": "conv1",
            "subject": "Scheduling",
            "client_id": "c1",
            "first_message": FIRST,
        },
    )
    return created


async def test_a_clinician_works_a_client_conversation(
    base_url: str,
    opened: dict[str, Any],
    clinician: Staff,
    notifications: Watch,
    events: Watch,
) -> None:
    assert opened["result"]["conversation"]["conversation_id"] == "conv1"
    thread = await clinician.ok("GET", CONVERSATION)
    assert thread["conversation"]["client_name"] == "Alex Rivera"
    assert [m["body"] for m in thread["messages"]] == [FIRST]
    [viewed] = await events.wait_for("gateway.staff_viewed_conversation.v1")
    assert viewed == viewed | {"staff_id": "clin1", "client_id": "c1", "conversation_id": "conv1"}

    sent = await clinician.ok(
        "POST", f"{CONVERSATION}/messages", {"body": "Bring the forms", "message_id": "m2"}
    )
    assert sent["result"]["body"] == "Bring the forms"
    await clinician.ok("POST", f"{CONVERSATION}/notes", {"body": NOTE_TEXT})
    await clinician.ok(
        "POST",
        f"{CONVERSATION}/tasks",
        {"title": TASK_TITLE, "task_id": "t1", "assignee_id": "clin1"},
    )
    thread = await clinician.ok("GET", CONVERSATION)
    assert [m["body"] for m in thread["messages"]] == [FIRST, "Bring the forms"]
    assert [note["body"] for note in thread["notes"]] == [NOTE_TEXT]
    assert [(t["task_id"], t["title"], t["done"]) for t in thread["tasks"]] == [
        ("t1", TASK_TITLE, False)
    ]

    updated = await clinician.ok("PATCH", "/api/staff/tasks/t1", {"done": True})
    assert updated["result"]["done"] is True
    assert (await clinician.ok("GET", CONVERSATION))["tasks"][0]["done"] is True

    copied = await clinician.ok("POST", f"{CONVERSATION}/copy", {"message_ids": ["m2"]})
    assert "Bring the forms" in copied["text"]
    assert FIRST not in copied["text"]

    removed = await clinician.ok("DELETE", f"{CONVERSATION}/messages/m2")
    assert removed["result"]["removed"] is True
    after = await clinician.ok("GET", CONVERSATION)
    assert [m["removed"] for m in after["messages"]] == [False, True]

    transcript = await clinician.ok("GET", "/api/staff/clients/c1/transcript")
    assert "Alex Rivera" in transcript["text"]
    assert FIRST in transcript["text"]
    assert "Bring the forms" in transcript["text"]  # kept, marked removed

    # The client replies from the portal; the clinician reads it, then marks it unread again.
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as portal:
        await sign_in(portal, notifications, "alex@example.org")
        reply = await portal.post("/api/client/conversations/conv1/messages", json={"body": "Ok!"})
        assert reply.status_code == 201, reply.text
    assert await clinician.inbox(unread_only=True) == ["conv1"]
    read = await clinician.ok("GET", CONVERSATION)
    assert read["messages"][-1]["body"] == "Ok!"
    assert await clinician.inbox(unread_only=True) == []
    unread = await clinician.ok("POST", f"{CONVERSATION}/unread")
    assert unread["result"]["unread"] is True
    assert await clinician.inbox(unread_only=True) == ["conv1"]


async def test_assign_archive_and_inbox_filters(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    opened: dict[str, Any],
    clinician: Staff,
    owner: Staff,
) -> None:
    await owner.ok(
        "POST",
        "/api/staff/conversations",
        {
            "conversation_id": "conv2",
            "subject": "Billing",
            "client_id": "c2",
            "first_message": "Hi",
        },
    )
    assert await clinician.inbox() == ["conv1"]
    assert await owner.inbox() == ["conv2"]
    assert await owner.inbox(view="others") == ["conv1"]
    assert sorted(await owner.inbox(view="all")) == ["conv1", "conv2"]
    assert await owner.inbox(view="all", search="Alex") == ["conv1"]
    assert await owner.inbox(view="all", search="Tuesday") == ["conv1"]
    assert await owner.inbox(view="all", search="nobody-by-that-name") == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert sorted(await owner.inbox(view="all", since=past, until=future)) == ["conv1", "conv2"]
    assert await owner.inbox(view="all", since=future) == []

    assigned = await clinician.ok("POST", f"{CONVERSATION}/assign", {"assignee_id": "manager1"})
    assert assigned["result"]["assignee_id"] == "manager1"
    manager = Staff(http, gateway_settings, "manager1")
    assert await manager.inbox() == ["conv1"]
    assert await clinician.inbox() == []  # it left the clinician's list
    assert await owner.inbox(view="others", assignee_id="manager1") == ["conv1"]

    archived = await manager.ok("POST", f"{CONVERSATION}/archive")
    assert archived["result"]["archived"] is True
    assert await manager.inbox() == []
    assert await manager.inbox(archived=True) == ["conv1"]
    unarchived = await manager.ok("POST", f"{CONVERSATION}/unarchive")
    assert unarchived["result"]["archived"] is False
    assert await manager.inbox() == ["conv1"]
    assert await manager.inbox(archived=True) == []


async def test_managers_run_the_practice(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    owner: Staff,
) -> None:
    manager = Staff(http, gateway_settings, "manager1")
    me = await manager.ok("GET", "/api/staff/me")
    assert me == me | {
        "staff_id": "manager1",
        "practice_id": PRACTICE,
        "roles": ["practice_manager"],
    }

    before = await manager.ok("GET", "/api/staff/settings")
    assert before["banner"] != "Closed Friday"
    patched = await manager.ok("PATCH", "/api/staff/settings", {"banner": "Closed Friday"})
    assert patched["result"]["banner"] == "Closed Friday"
    assert (await owner.ok("GET", "/api/staff/settings"))["banner"] == "Closed Friday"

    # Messaging switched off for a client: nobody can start a conversation with them.
    clin2 = Staff(http, gateway_settings, "clin2")
    await manager.ok("PUT", "/api/staff/clients/c2/messaging", {"enabled": False})
    refused = await clin2.call(
        "POST",
        "/api/staff/conversations",
        {"subject": "Hi", "client_id": "c2", "first_message": "x"},
    )
    assert refused.status_code in (403, 409, 422), refused.text
    await manager.ok("PUT", "/api/staff/clients/c2/messaging", {"enabled": True})
    # ...and switched off for a team member: they cannot send.
    await manager.ok("PUT", "/api/staff/team/clin2/messaging", {"enabled": False})
    refused = await clin2.call(
        "POST",
        "/api/staff/conversations",
        {"subject": "Hi", "client_id": "c2", "first_message": "x"},
    )
    assert refused.status_code in (403, 409, 422), refused.text
    await manager.ok("PUT", "/api/staff/team/clin2/messaging", {"enabled": True})
    await clin2.ok(
        "POST",
        "/api/staff/conversations",
        {"conversation_id": "conv-c2", "subject": "Hi", "client_id": "c2", "first_message": "x"},
    )

    location, accepted = await announce(
        manager, {"subject": "Holiday hours", "body": "Closed Friday", "announcement_id": "a1"}
    )
    assert accepted == accepted | {"clients": 2, "state": "sending"}
    sent = await until_sent(manager, location)
    assert sent == sent | {"clients": 2, "conversations": 2}
    page = await manager.ok("GET", "/api/staff/inbox", search="Holiday hours")
    assert sorted(item["client_id"] for item in page["items"]) == ["c1", "c2"]


async def test_the_team_list_names_colleagues_without_their_addresses(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    broker: Broker,
    database: AsyncDatabase[Document],
    clinician: Staff,
) -> None:
    manager = Staff(http, gateway_settings, "manager1")
    await manager.ok("PUT", "/api/staff/team/clin2/messaging", {"enabled": False})
    # Conversations switches clin2 off at once; the gateway's copy follows its event, which
    # comes on another queue than biller2's update below.
    await eventually(
        lambda: database["people"].count_documents(
            {"person_id": "clin2", "messaging_enabled": False}
        ),
        until=lambda count: count == 1,
        what="clin2 switched off",
    )
    leaver = next(event for event in world["staff"] if event.staff_id == "biller2")
    fresh = {"message_id": uuid.uuid4(), "occurred_at": datetime.now(UTC)}
    await broker.publish(leaver.model_copy(update={"active": False, **fresh}))
    await eventually(
        lambda: database["people"].count_documents({"person_id": "biller2", "active": False}),
        until=lambda count: count == 1,
        what="biller2 deactivated",
    )

    answer = await clinician.call("GET", "/api/staff/team")
    assert answer.status_code == 200, answer.text
    team = answer.json()
    assert [(member["staff_id"], member["display_name"]) for member in team] == [
        ("biller1", "Biller1"),
        ("clin1", "Clin1"),
        ("clin2", "Clin2"),
        ("manager1", "Manager1"),
        ("owner1", "Owner1"),
    ]
    by_id = {member["staff_id"]: member for member in team}
    assert by_id["owner1"]["roles"] == ["owner"]
    assert (by_id["clin1"]["messaging_enabled"], by_id["clin2"]["messaging_enabled"]) == (
        True,
        False,
    )
    assert "@" not in answer.text


async def announce(staff: Staff, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """POST an announcement: accepted (202) with where to follow it and its first status."""
    answer = await staff.call("POST", ANNOUNCEMENTS, body)
    assert answer.status_code == 202, answer.text
    accepted: dict[str, Any] = answer.json()["result"]
    return answer.headers["location"], accepted


async def until_sent(staff: Staff, location: str) -> dict[str, Any]:
    sent: dict[str, Any] = await eventually(
        lambda: staff.ok("GET", location),
        until=lambda progress: progress["state"] == "sent",
        what=f"{location} sent",
    )
    return sent


async def test_an_announcement_is_accepted_at_once_and_reaches_every_client_once(
    http: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    broker: Broker,
    mongo: AsyncMongoClient[Document],
    conversations_settings: ConversationsSettings,
    owner: Staff,
    clinician: Staff,
) -> None:
    """With batches of three, the practice's announcement takes a dozen batches: the answer
    comes before they are done, progress is followed at Location, and a repeat (same id)
    sends nothing twice."""
    for n in range(BULK_CLIENTS):
        await broker.publish(
            ClientUpserted(
                practice_id=PRACTICE,
                client_id=f"bulk-{n}",
                display_name=f"Bulk Client {n}",
                email=f"bulk-{n}@example.org",
                primary_clinician_id="clin2",
            )
        )
    database = mongo[conversations_settings.database]
    clients = BULK_CLIENTS + 2  # and Alex and Blair
    await eventually(
        lambda: database["people"].count_documents({"practice_id": PRACTICE, "kind": "client"}),
        until=lambda count: count == clients,
        what="the practice's clients projected",
    )
    manager = Staff(http, gateway_settings, "manager1")
    body = {"subject": "Holiday hours", "body": "Closed Friday", "announcement_id": "holiday"}

    location, accepted = await announce(manager, body)
    assert location == f"{ANNOUNCEMENTS}/holiday"
    assert accepted == {
        "announcement_id": "holiday",
        "clients": clients,
        "conversations": 0,
        "state": "sending",
    }
    threads = database["threads"]
    assert await threads.count_documents({"subject": "Holiday hours"}) < clients
    _, repeated = await announce(manager, body)
    assert repeated["clients"] == clients

    sent = await until_sent(manager, location)
    assert sent == accepted | {"conversations": clients, "state": "sent"}
    per_client = Counter(
        [document["client_id"] async for document in threads.find({"subject": "Holiday hours"})]
    )
    assert len(per_client) == clients
    assert set(per_client.values()) == {1}
    assert (await announce(manager, body))[1] == sent
    assert await threads.count_documents({"subject": "Holiday hours"}) == clients

    assert await owner.ok("GET", location) == sent
    for hidden in (
        await clinician.call("GET", location),  # neither a manager nor its sender
        await manager.call("GET", f"{ANNOUNCEMENTS}/no-such-announcement"),
    ):
        assert hidden.status_code == 404, hidden.text
        assert hidden.headers["content-type"].startswith("application/problem+json")

    own_location, own = await announce(
        clinician, {"subject": "Running late", "body": "Starting at ten", "clinician_id": "clin1"}
    )
    assert own["clients"] == 1
    assert (await until_sent(clinician, own_location))["conversations"] == 1


async def test_owner_downloads_an_export_and_reads_the_audit_logs(
    opened: dict[str, Any], audit: str, clinician: Staff, owner: Staff, events: Watch
) -> None:
    await clinician.ok("POST", f"{CONVERSATION}/notes", {"body": NOTE_TEXT})
    export = await owner.call("POST", "/api/staff/exports", {})
    assert export.status_code == 200, export.text
    assert export.headers["content-type"] == "application/zip"
    assert export.headers["content-disposition"].startswith('attachment; filename="sotto-export-')
    with pyzipper.AESZipFile(io.BytesIO(export.content)) as archive:
        document = json.loads(archive.read("export.json"))
        transcript = archive.read("transcripts/conv1.txt").decode()
    [conversation] = document["conversations"]
    assert conversation["conversation_id"] == "conv1"
    assert FIRST in json.dumps(conversation)
    assert NOTE_TEXT in json.dumps(conversation)
    assert FIRST in transcript

    protected = await owner.call("POST", "/api/staff/exports", {"password": "correct horse"})
    assert protected.status_code == 200
    with pyzipper.AESZipFile(io.BytesIO(protected.content)) as archive:
        with pytest.raises(RuntimeError):
            archive.read("export.json")
        archive.setpassword(b"correct horse")
        assert FIRST in archive.read("export.json").decode()
    made = await events.wait_for("gateway.export_made.v1", count=2)
    assert sorted(item["password_protected"] for item in made) == [False, True]

    await owner.ok("GET", CONVERSATION)

    async def access() -> list[tuple[str, str | None, str | None]]:
        page = await owner.ok("GET", "/api/staff/audit/access", staff_id="owner1")
        return [(r["routing_key"], r["outcome"], r["subject_id"]) for r in page["items"]]

    logged = await eventually_contains(
        access, ("gateway.staff_viewed_conversation.v1", "viewed", "c1")
    )
    assert logged.count(("gateway.export_made.v1", "exported", None)) == 2
    assert NOTE_TEXT not in str(logged)

    # A secure-message notice for Alex: the link issue is on the delivery log.
    await owner.ok("PATCH", "/api/staff/settings", {"client_notification_delay_seconds": 0})
    await clinician.ok(
        "POST",
        "/api/staff/conversations",
        {"conversation_id": "conv3", "subject": "Forms", "client_id": "c1", "first_message": "Hi"},
    )

    async def deliveries() -> list[tuple[str, str | None]]:
        page = await owner.ok("GET", "/api/staff/audit/deliveries", recipient_id="c1")
        return [(r["routing_key"], r["conversation_id"]) for r in page["items"]]

    await eventually_contains(deliveries, ("gateway.link_issued.v1", "conv3"))


async def test_a_clients_access_log_includes_their_contacts_sessions(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    audit: str,
    owner: Staff,
    notifications: Watch,
) -> None:
    """Sam, Alex's partner, signs in: Alex's access log shows it beside Alex's own records."""
    await sign_in(http, notifications, "sam@example.org")
    await sign_in(http, notifications, "blair@example.org")

    async def alex_access() -> list[tuple[str, str | None]]:
        page = await owner.ok("GET", "/api/staff/audit/access", client_id="c1")
        return [(r["routing_key"], r["subject_id"]) for r in page["items"]]

    logged = await eventually_contains(alex_access, ("gateway.session_started.v1", "k1"))
    assert {subject for _, subject in logged} <= {"c1", "k1"}, "nobody else's records"


async def test_an_export_password_never_travels_on_the_broker(
    opened: dict[str, Any], owner: Staff, broker: Broker
) -> None:
    """The gateway password-protects the archive itself: the request to conversations, and
    every event, carry no password, and the download opens only with it."""
    password = "pinecone-lantern-4417"
    commands = await broker.watch(broker.topology.commands.name)
    published = await broker.watch(broker.topology.events.name)
    protected = await owner.call("POST", "/api/staff/exports", {"password": password})
    assert protected.status_code == 200, protected.text
    with pyzipper.AESZipFile(io.BytesIO(protected.content)) as archive:
        with pytest.raises(RuntimeError):
            archive.read("export.json")
        archive.setpassword(b"not the password")
        with pytest.raises(RuntimeError):
            archive.read("export.json")
        archive.setpassword(password.encode())
        assert FIRST in archive.read("export.json").decode()
        assert FIRST in archive.read("transcripts/conv1.txt").decode()
    [request] = await commands.wait_for("conversations.export_practice.v1")
    assert request.get("password") is None
    await published.wait_for("gateway.export_made.v1")
    captured = [item.body for item in commands.messages + published.messages]
    assert password not in json.dumps(captured)


async def test_a_transcript_and_copied_messages_are_on_the_access_log(
    opened: dict[str, Any], audit: str, clinician: Staff, owner: Staff, events: Watch
) -> None:
    """Like opening a thread, reading a client's transcript or copying messages out of one is
    an access: each publishes its event (ids only) and lands on the owner's access log."""
    await clinician.ok(
        "POST", f"{CONVERSATION}/messages", {"body": "Bring the forms", "message_id": "m2"}
    )
    copied = await clinician.ok("POST", f"{CONVERSATION}/copy", {"message_ids": ["m2"]})
    assert "Bring the forms" in copied["text"]
    [copy] = await events.wait_for("gateway.staff_copied_messages.v1")
    assert copy == copy | {
        "staff_id": "clin1",
        "conversation_id": "conv1",
        "client_id": "c1",
        "posted_message_ids": ["m2"],
    }
    transcript = await clinician.ok("GET", "/api/staff/clients/c1/transcript")
    assert FIRST in transcript["text"]
    [viewed] = await events.wait_for("gateway.staff_viewed_transcript.v1")
    assert viewed == viewed | {"staff_id": "clin1", "client_id": "c1"}
    assert "Bring the forms" not in json.dumps([copy, viewed])
    assert not events.of("gateway.staff_viewed_conversation.v1")

    async def access() -> list[tuple[str, str | None, str | None, str | None]]:
        page = await owner.ok("GET", "/api/staff/audit/access", client_id="c1")
        return [
            (r["routing_key"], r["outcome"], r["actor_id"], r["conversation_id"])
            for r in page["items"]
        ]

    logged = await eventually_contains(
        access, ("gateway.staff_viewed_transcript.v1", "viewed", "clin1", None)
    )
    assert ("gateway.staff_copied_messages.v1", "copied", "clin1", "conv1") in logged
    assert "Bring the forms" not in str(logged)


async def eventually_contains(probe: Any, wanted: Any) -> list[Any]:
    found: list[Any] = await eventually(
        probe, until=lambda items: wanted in items, what=f"audit record {wanted}"
    )
    return found


async def test_without_a_valid_token_nothing_is_answered(
    http: httpx.AsyncClient, opened: dict[str, Any], owner: Staff
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
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for endpoint in STAFF_ENDPOINTS:
            answer = await http.request(
                endpoint.method, endpoint.path, json=endpoint.body, headers=headers
            )
            assert answer.status_code == 401, (token, endpoint.method, endpoint.path)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert FIRST not in answer.text
    thread = await owner.ok("GET", CONVERSATION)
    assert [m["body"] for m in thread["messages"]] == [FIRST]
    assert thread["notes"] == []
    assert thread["conversation"]["archived"] is False


async def test_a_date_beyond_the_calendar_is_a_bad_request(
    world: dict[str, Any], owner: Staff
) -> None:
    # Year 1 at +23:08 is in year 0 in UTC: found by schemathesis as a 500.
    answer = await owner.call(
        "GET", "/api/staff/audit/access", until="0001-01-01T01:02:03+23:08", staff_id="owner1"
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
