"""What a dead instance leaves behind in its SMTP windows is settled by the sweep of a live one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from sotto_contracts.base import utc_now
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import EmailAmbiguous, EmailDelivered
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document
from sotto_kit.outbox import new_document_outbox
from sotto_notifier.adapters.store import DeliveryStore
from sotto_notifier.config import NotifierSettings
from sotto_notifier.domain import DeliveryRecord, DeliveryState, WindowOutcome, delivery_event
from sotto_notifier.main import create_app
from tests.integration.notifier.support import EventTap, address, command
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.serving import serve
from tests.support.waiting import eventually


def left_behind(notification_id: str, state: DeliveryState, attempts: int) -> DeliveryRecord:
    return DeliveryRecord(
        notification_id=notification_id,
        practice_id="practice-1",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c-left"),
        conversation_id="conv-1",
        state=state,
        attempts=attempts,
    )


def record_document(record: DeliveryRecord, outbox: dict[str, Any]) -> Document:
    now = utc_now()
    return {
        "_id": record.notification_id,
        "practice_id": record.practice_id,
        "kind": record.kind.value,
        "recipient": record.recipient.model_dump(mode="json"),
        "conversation_id": record.conversation_id,
        "recipient_fingerprint": None,
        "command_id": "left-behind",
        "state": record.state.value,
        "attempts": record.attempts,
        "history": [],
        "created_at": now,
        "updated_at": now,
        **outbox,
    }


async def test_a_window_left_open_without_a_result_is_settled_ambiguous_and_never_resent(
    notifier_settings: Callable[..., NotifierSettings],
    mongo: AsyncMongoClient[Document],
    amqp: Amqp,
    mail: MailCatcher,
    events: EventTap,
) -> None:
    settings = notifier_settings(stale_sending_seconds=1.0, sweep_interval_seconds=0.5)
    database = mongo[settings.database]
    recipient = address("abandoned")
    abandoned = command(recipient)
    record = left_behind(abandoned.notification_id, DeliveryState.CLAIMED, 0)
    # What an instance killed inside the SMTP exchange leaves: a claim and an open window.
    await database["deliveries"].insert_one(
        record_document(record, new_document_outbox(settings.topology, []))
    )
    await database["send_windows"].insert_one(
        {"_id": f"{record.notification_id}/1", "at": utc_now() - timedelta(seconds=30)}
    )
    async with serve(create_app(settings)):
        await eventually(
            events.drain,
            until=lambda _: events.of(record.notification_id) == ["notifier.email_ambiguous.v1"],
            what="ambiguous event",
        )
        # The same command arriving later (not a redelivery) sends nothing.
        later = command(address())
        await amqp.publish(abandoned)
        await amqp.publish(later)
        await eventually(lambda: mail.to_address(later.to_address), what="the later email")
    stored = await database["deliveries"].find_one({"_id": record.notification_id})
    assert stored is not None
    assert (stored["state"], stored["attempts"]) == ("ambiguous", 1)
    assert await database["send_windows"].count_documents({}) == 0
    assert await mail.to_address(recipient) == []


async def test_a_recorded_result_left_unpublished_is_published_and_its_window_closed(
    notifier_settings: Callable[..., NotifierSettings],
    mongo: AsyncMongoClient[Document],
    events: EventTap,
) -> None:
    settings = notifier_settings(sweep_interval_seconds=0.5)
    database = mongo[settings.database]
    record = left_behind(command(address()).notification_id, DeliveryState.DELIVERED, 1)
    event = delivery_event(record, EmailDelivered, attempt=1)
    # An instance killed after recording the result, before publishing its event.
    await database["deliveries"].insert_one(
        record_document(record, new_document_outbox(settings.topology, [event]))
    )
    await database["send_windows"].insert_one(
        {"_id": f"{record.notification_id}/1", "at": utc_now() - timedelta(seconds=30)}
    )
    async with serve(create_app(settings)):
        await eventually(
            lambda: database["send_windows"].count_documents({}),
            until=lambda open_windows: open_windows == 0,
            what="the window closed",
        )
    await eventually(
        events.drain,
        until=lambda _: events.of(record.notification_id) == ["notifier.email_delivered.v1"],
        what="the delivered event",
    )
    published = [e for e in events.events if e.get("notification_id") == record.notification_id]
    assert {str(e["message_id"]) for e in published} == {str(event.message_id)}
    stored = await database["deliveries"].find_one({"_id": record.notification_id})
    assert stored is not None
    assert (stored["outbox"], stored["outbox_pending"]) == ({}, False)


async def test_a_window_whose_record_read_is_interrupted_is_withdrawn(
    notifier_settings: Callable[..., NotifierSettings],
    mongo: AsyncMongoClient[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = notifier_settings()
    topology = settings.topology
    store = DeliveryStore(
        mongo[settings.database], topology, Publisher(RabbitBroker(settings.rabbitmq_url), topology)
    )
    record = await store.claim(command(address()), None)

    async def interrupted(notification_id: str) -> DeliveryRecord | None:
        raise asyncio.CancelledError

    with monkeypatch.context() as patched:
        patched.setattr(store, "get", interrupted)
        with pytest.raises(asyncio.CancelledError):
            await store.open_window(record.notification_id, 1)
    # Nothing was sent under it, so it must not stay open to be settled as ambiguous.
    assert await store.open_window(record.notification_id, 1) is WindowOutcome.OPENED


async def test_a_final_result_is_never_replaced_by_a_later_one(
    notifier_settings: Callable[..., NotifierSettings], mongo: AsyncMongoClient[Document]
) -> None:
    settings = notifier_settings()
    topology = settings.topology
    store = DeliveryStore(
        mongo[settings.database], topology, Publisher(RabbitBroker(settings.rabbitmq_url), topology)
    )
    record = await store.claim(command(address()), None)
    ambiguous = delivery_event(record, EmailAmbiguous, attempt=1)
    delivered = delivery_event(record, EmailDelivered, attempt=1)
    assert await store.record_attempt(
        record.notification_id, 1, DeliveryState.AMBIGUOUS, None, ambiguous
    )
    # The holder of the window, still sending when a redelivered copy settled it as ambiguous.
    assert (
        await store.record_attempt(
            record.notification_id, 1, DeliveryState.DELIVERED, None, delivered
        )
        is None
    )
    stored = await store.collection.find_one({"_id": record.notification_id})
    assert stored is not None
    assert stored["state"] == "ambiguous"
    assert [entry["state"] for entry in stored["history"]] == ["ambiguous"]
    assert list(stored["outbox"]) == [str(ambiguous.message_id)]
