"""Instant sign-in without enumeration, single-use links, session timeouts, CSRF and sign-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import NotificationKind
from sotto_contracts.inbound import ClientUpserted
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import PRACTICE
from tests.integration.gateway.support import Broker, Watch, adopt_session
from tests.support.waiting import eventually

SEND = "notifier.send_notification.v1"
REQUESTED = "gateway.sign_in_requested.v1"


async def request_link(
    http: httpx.AsyncClient, notifications: Watch, email: str, count: int = 1
) -> str:
    answer = await http.post("/api/portal/calm-waters/sign-in", json={"email": email})
    assert answer.status_code == 202
    commands = await notifications.wait_for(
        SEND, count=count, where=lambda body: body["kind"] == NotificationKind.SIGN_IN_LINK
    )
    token: str = commands[-1]["link_url"].rsplit("/sign-in/", 1)[1]
    return token


async def test_sign_in_answer_is_identical_for_known_and_unknown_addresses(
    http: httpx.AsyncClient, world: dict[str, Any], notifications: Watch, events: Watch
) -> None:
    known = await http.post("/api/portal/calm-waters/sign-in", json={"email": " Alex@Example.org"})
    unknown = await http.post(
        "/api/portal/calm-waters/sign-in", json={"email": "nobody@example.org"}
    )
    foreign = await http.post(
        "/api/portal/calm-waters/sign-in", json={"email": "other@example.org"}
    )
    assert known.status_code == unknown.status_code == foreign.status_code == 202
    assert known.content == unknown.content == foreign.content
    ignored = {"date", "x-request-id"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }

    requested = await events.wait_for(REQUESTED, count=3)
    recipients = sorted(str(item["recipient"]) for item in requested)
    assert recipients == ["None", "None", "{'kind': 'client', 'id': 'c1'}"]
    assert all("example.org" not in str(item) for item in requested)
    [command] = await notifications.wait_for(SEND)
    assert command["kind"] == NotificationKind.SIGN_IN_LINK
    assert command["to_address"] == "alex@example.org"


async def test_sign_in_link_is_single_use_and_starts_a_practice_wide_session(
    http: httpx.AsyncClient, world: dict[str, Any], notifications: Watch, events: Watch
) -> None:
    token = await request_link(http, notifications, "sam@example.org")
    first = await http.post(f"/api/portal/sign-in/{token}")
    assert first.status_code == 200, first.text
    assert first.json()["conversation_id"] is None
    [started] = await events.wait_for("gateway.session_started.v1")
    assert started["via"] == "sign_in_link"
    assert started["principal"] == {"kind": "contact", "id": "k1"}
    again = await http.post(f"/api/portal/sign-in/{token}")
    assert again.status_code == 404
    adopt_session(http, first)
    assert (await http.get("/api/client/session")).json()["conversation_id"] is None


async def test_a_used_sign_in_link_stays_used_when_its_used_mark_is_written_back(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    """On FerretDB an update rewrites the whole document, so the link's outbox flush can put
    `used: False` back at the moment the link is followed (seen once in CI)."""
    token = await request_link(http, notifications, "sam@example.org")
    assert (await http.post(f"/api/portal/sign-in/{token}")).status_code == 200
    written_back = await database["sign_in_links"].update_many({}, {"$set": {"used": False}})
    assert written_back.modified_count == 1
    assert (await http.post(f"/api/portal/sign-in/{token}")).status_code == 404
    assert (await http.get(f"/api/portal/sign-in/{token}")).status_code == 410


async def test_opening_the_emailed_link_uses_nothing_and_its_button_signs_in(
    http: httpx.AsyncClient, world: dict[str, Any], notifications: Watch
) -> None:
    """Mail scanners open links before people do: opening the page must not spend the link."""
    token = await request_link(http, notifications, "alex@example.org")
    for _ in range(2):
        page = await http.get(f"/api/portal/sign-in/{token}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert f'action="/api/portal/sign-in/{token}/continue"' in page.text
        assert "Sign in to Calm Waters" in page.text
        assert "sotto_session" not in page.cookies

    followed = await http.post(f"/api/portal/sign-in/{token}/continue")
    assert followed.status_code == 303
    assert followed.headers["location"] == "/o/calm-waters/messages"
    assert "sotto_session" in followed.cookies

    for spent in (
        await http.get(f"/api/portal/sign-in/{token}"),
        await http.post(f"/api/portal/sign-in/{token}/continue"),
    ):
        assert spent.status_code == 410
        assert "sotto_session" not in spent.cookies
        assert 'href="/o/calm-waters/messages"' in spent.text  # ask for a new one there


async def test_a_newer_sign_in_link_replaces_the_older_one(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    older = await request_link(http, notifications, "alex@example.org")
    newer = await request_link(http, notifications, "alex@example.org", count=2)
    # what the older link's outbox flush, still running, may do on FerretDB
    written_back = await database["sign_in_links"].update_one(
        {"replaced": True}, {"$set": {"used": False}}
    )
    assert written_back.modified_count == 1
    assert (await http.post(f"/api/portal/sign-in/{older}")).status_code == 404
    assert (await http.post(f"/api/portal/sign-in/{newer}")).status_code == 200


async def test_an_expired_sign_in_link_is_refused(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    token = await request_link(http, notifications, "alex@example.org")
    await database["sign_in_links"].update_many(
        {}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    assert (await http.post(f"/api/portal/sign-in/{token}")).status_code == 404


async def test_unknown_practice_page_is_not_found(http: httpx.AsyncClient) -> None:
    answer = await http.post("/api/portal/no-such-practice/sign-in", json={"email": "a@b.org"})
    assert answer.status_code == 404


async def signed_in(http: httpx.AsyncClient, notifications: Watch) -> str:
    token = await request_link(http, notifications, "alex@example.org")
    return adopt_session(http, await http.post(f"/api/portal/sign-in/{token}"))


async def test_idle_session_ends(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    await signed_in(http, notifications)
    assert (await http.get("/api/client/session")).status_code == 200
    await database["sessions"].update_many(
        {}, {"$set": {"last_seen_at": datetime.now(UTC) - timedelta(minutes=16)}}
    )
    expired = await http.get("/api/client/session")
    assert expired.status_code == 401
    assert expired.json()["code"] == "session_required"
    [ended] = await events.wait_for("gateway.session_ended.v1")
    assert ended["reason"] == "idle_timeout"
    assert (await http.get("/api/client/session")).status_code == 401


async def test_session_ends_after_its_absolute_lifetime_even_when_active(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    await signed_in(http, notifications)
    await database["sessions"].update_many(
        {}, {"$set": {"started_at": datetime.now(UTC) - timedelta(minutes=61)}}
    )
    assert (await http.get("/api/client/session")).status_code == 401
    [ended] = await events.wait_for("gateway.session_ended.v1")
    assert ended["reason"] == "absolute_timeout"


async def test_state_changing_calls_need_the_csrf_token(
    http: httpx.AsyncClient, world: dict[str, Any], notifications: Watch, events: Watch
) -> None:
    csrf = await signed_in(http, notifications)
    del http.headers["X-CSRF-Token"]
    refused = await http.post("/api/client/sign-out")
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    forged = await http.post("/api/client/sign-out", headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert (await http.get("/api/client/session")).status_code == 200

    signed_out = await http.post("/api/client/sign-out", headers={"X-CSRF-Token": csrf})
    assert signed_out.status_code == 204
    [ended] = await events.wait_for("gateway.session_ended.v1")
    assert ended["reason"] == "sign_out"
    assert (await http.get("/api/client/session")).status_code == 401


async def test_an_address_with_several_records_switches_between_them(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    broker: Broker,
    database: AsyncDatabase[Document],
) -> None:
    """Sam is Alex's partner (contact k1) and a client in their own right (c3), with one
    address: sign-in opens Sam's own record and can switch to the partner's, nothing else."""
    await broker.publish(
        ClientUpserted(
            practice_id=PRACTICE,
            client_id="c3",
            display_name="Sam Rivera",
            email="Sam@Example.org",
            primary_clinician_id="clin2",
            clinician_ids=["clin2"],
            messaging_enabled=True,
        )
    )
    await eventually(
        lambda: database["people"].count_documents({"_id": f"{PRACTICE}|client|c3"}),
        until=lambda count: count == 1,
        what="c3 projected",
    )
    token = await request_link(http, notifications, "sam@example.org")
    signed_in_as_sam = await http.post(f"/api/portal/sign-in/{token}")
    first_csrf = adopt_session(http, signed_in_as_sam)
    first_session = signed_in_as_sam.cookies["sotto_session"]
    view = (await http.get("/api/client/session")).json()
    assert view["principal"] == {"kind": "client", "id": "c3"}
    assert view["identities"] == [
        {
            "principal": {"kind": "client", "id": "c3"},
            "display_name": "Sam Rivera",
            "on_behalf_of": None,
        },
        {
            "principal": {"kind": "contact", "id": "k1"},
            "display_name": "Sam Rivera",
            "on_behalf_of": "Alex Rivera",
        },
    ]

    alex = {"principal": {"kind": "client", "id": "c1"}}
    refused = await http.post("/api/client/session/identity", json=alex)
    assert refused.status_code == 404, "another address's record is not Sam's to open"

    switched = await http.post(
        "/api/client/session/identity", json={"principal": {"kind": "contact", "id": "k1"}}
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["csrf_token"] != first_csrf
    [ended] = await events.wait_for("gateway.session_ended.v1")
    assert ended["reason"] == "switched_identity"
    assert ended["principal"] == {"kind": "client", "id": "c3"}
    started = await events.wait_for(
        "gateway.session_started.v1", where=lambda event: event["via"] == "identity_switch"
    )
    assert started[0]["principal"] == {"kind": "contact", "id": "k1"}

    adopt_session(http, switched)
    now = (await http.get("/api/client/session")).json()
    assert now["principal"] == {"kind": "contact", "id": "k1"}
    assert [item["principal"]["id"] for item in now["identities"]] == ["k1", "c3"]
    assert (await http.get("/api/client/conversations")).status_code == 200

    http.cookies.set("sotto_session", first_session)
    assert (await http.get("/api/client/session")).status_code == 401, "the old session ended"


async def test_a_secure_link_session_cannot_switch_records(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    await signed_in(http, notifications)
    await database["sessions"].update_many({}, {"$set": {"conversation_id": "t1"}})
    view = (await http.get("/api/client/session")).json()
    assert [item["principal"]["id"] for item in view["identities"]] == ["c1"]
    refused = await http.post(
        "/api/client/session/identity", json={"principal": {"kind": "client", "id": "c1"}}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "sign_in_required"
