"""The identity projection follows the practice system's client events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import ClientEmailWorkflow, ParticipantKind, ParticipantRef
from sotto_contracts.conversations import ClientEmailDue
from sotto_contracts.inbound import ClientUpserted
from sotto_gateway.adapters.store import IdentityStore
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import PRACTICE
from tests.integration.gateway.support import SEND, Broker, Watch
from tests.support.waiting import eventually


async def test_a_contact_dropped_from_the_client_loses_portal_access(
    broker: Broker, database: AsyncDatabase[Document], world: dict[str, Any]
) -> None:
    alex: ClientUpserted = world["clients"][0]
    partner = f"{PRACTICE}|contact|k1"
    people = database["people"]
    before = await people.find_one({"_id": partner})
    assert before is not None
    assert before["active"] is True

    await broker.publish(
        ClientUpserted(**alex.model_dump(exclude={"message_id", "occurred_at", "contacts"}))
    )

    async def alex_now() -> Document:
        document = await people.find_one({"_id": f"{PRACTICE}|client|c1"})
        assert document is not None
        return document

    # the client is written last
    await eventually(alex_now, until=lambda alex: alex["contact_ids"] == [], what="client saved")
    assert (await alex_now())["active"] is True
    assert await partner_active(people, partner)() is False


def partner_active(people: Any, partner: str) -> Callable[[], Awaitable[bool]]:
    async def active() -> bool:
        document = await people.find_one({"_id": partner})
        assert document is not None
        return bool(document["active"])

    return active


async def test_a_contact_dropped_is_switched_off_even_when_the_first_attempt_fails_midway(
    broker: Broker,
    database: AsyncDatabase[Document],
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first delivery fails after part of its writes (as a crash would); the redelivered
    event must still find the contact it drops."""
    alex: ClientUpserted = world["clients"][0]
    partner = f"{PRACTICE}|contact|k1"
    deactivate = IdentityStore.deactivate
    failures: list[ParticipantRef] = []

    async def fails_once(store: IdentityStore, practice_id: str, ref: ParticipantRef) -> None:
        if not failures:
            failures.append(ref)
            raise ConnectionError("the database went away")
        await deactivate(store, practice_id, ref)

    monkeypatch.setattr(IdentityStore, "deactivate", fails_once)
    await broker.publish(
        ClientUpserted(**alex.model_dump(exclude={"message_id", "occurred_at", "contacts"}))
    )

    active = partner_active(database["people"], partner)
    await eventually(active, until=lambda on: not on, what="partner deactivated")
    assert failures == [ParticipantRef(kind=ParticipantKind.CONTACT, id="k1")]


async def test_an_older_client_event_arriving_late_changes_nothing(
    broker: Broker, database: AsyncDatabase[Document], world: dict[str, Any]
) -> None:
    alex: ClientUpserted = world["clients"][0]
    people = database["people"]
    newer = ClientUpserted(
        **alex.model_dump(exclude={"message_id", "occurred_at", "display_name"}),
        display_name="Alex Newer",
    )
    older = ClientUpserted(
        **alex.model_dump(exclude={"message_id", "occurred_at", "contacts"}),
        occurred_at=newer.occurred_at - timedelta(minutes=5),
    )
    await broker.publish(newer)

    name = display_name(people, "c1")
    await eventually(name, until=lambda value: value == "Alex Newer", what="newer applied")
    await broker.publish(older)
    marker = ClientUpserted(
        **world["clients"][1].model_dump(exclude={"message_id", "occurred_at", "display_name"}),
        display_name="Marker",
    )
    await broker.publish(marker)  # one consumer, in order: once it shows, `older` was handled
    marker_name = display_name(people, marker.client_id)
    await eventually(marker_name, until=lambda value: value == "Marker", what="marker applied")
    assert await partner_active(people, f"{PRACTICE}|contact|k1")() is True
    assert await name() == "Alex Newer"


def display_name(people: Any, client_id: str) -> Callable[[], Awaitable[str]]:
    async def name() -> str:
        document = await people.find_one({"_id": f"{PRACTICE}|client|{client_id}"})
        assert document is not None
        return str(document["display_name"])

    return name


async def test_an_email_due_for_someone_not_projected_yet_waits_for_their_record(
    broker: Broker, http: httpx.AsyncClient, notifications: Watch, world: dict[str, Any]
) -> None:
    """Conversations may ask for an email before the gateway has read the client's event from
    its own queue: the request is retried, not recorded as sent to nobody."""
    due = ClientEmailDue(
        practice_id=PRACTICE,
        client_id="c-new",
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c-new"),
        workflow=ClientEmailWorkflow.STATEMENT_READY,
        reference_id="st-1",
        conversation_id="notices-c-new",
    )
    await broker.publish(due)

    async def retried() -> int:
        stats = (await http.get("/health")).json()["messages"]
        return int(stats["retried"].get(ClientEmailDue.ROUTING_KEY, 0))

    await eventually(retried, until=lambda count: count >= 1, what="a retry")
    await broker.publish(
        ClientUpserted(
            practice_id=PRACTICE, client_id="c-new", display_name="New", email="new@example.org"
        )
    )
    [email] = await notifications.wait_for(SEND)
    assert (email["to_address"], email["kind"]) == ("new@example.org", "statement_ready")
