"""Generic single-recipient emails through real RabbitMQ, FerretDB and the SMTP catcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo import AsyncMongoClient

from sotto_contracts.common import NotificationKind
from sotto_kit.mongo import Document
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app
from tests.integration.notifier.support import PRACTICE_NAME, EventTap, address, command
from tests.support.amqp import Amqp
from tests.support.mail import CaughtMail, MailCatcher
from tests.support.serving import serve
from tests.support.waiting import eventually

SettingsFactory = Callable[..., NotifierSettings]


def assert_single_recipient(mail: CaughtMail, recipient: str) -> None:
    assert mail.envelope_recipients == [recipient]
    assert mail.to == [recipient]
    assert mail.cc == []
    assert mail.bcc == []


async def mails_to(catcher: MailCatcher, recipient: str, count: int = 1) -> list[CaughtMail]:
    return await eventually(
        lambda: catcher.to_address(recipient),
        until=lambda found: len(found) >= count,
        timeout=60,
        what=f"{count} email(s)",
    )


async def test_every_kind_sends_one_generic_email_to_one_recipient(
    notifier_settings: SettingsFactory, amqp: Amqp, mail: MailCatcher, events: EventTap
) -> None:
    sent = {
        kind: command(address(kind.value.replace("_", "-")), kind=kind) for kind in NotificationKind
    }
    discreet = command(address("discreet"), discreet=True)
    async with serve(create_app(notifier_settings())):
        for notification in [*sent.values(), discreet]:
            await amqp.publish(notification)
        for kind, notification in sent.items():
            (caught,) = await mails_to(mail, notification.to_address)
            assert_single_recipient(caught, notification.to_address)
            assert PRACTICE_NAME in caught.subject
            assert PRACTICE_NAME in caught.text
            assert notification.link_url in caught.text
            assert f'href="{notification.link_url}"' in caught.html, kind
        (caught,) = await mails_to(mail, discreet.to_address)
        assert_single_recipient(caught, discreet.to_address)
        assert caught.subject == "You have a new notification"
        assert PRACTICE_NAME not in caught.all_text
        assert discreet.link_url in caught.text

    delivered = await eventually(
        events.drain, until=lambda found: len(found) >= len(sent) + 1, what="delivery events"
    )
    assert {event["routing_key"] for event in delivered} == {"notifier.email_delivered.v1"}
    assert all("@" not in str(event) for event in delivered)


async def test_redelivered_and_duplicate_commands_send_one_email(
    notifier_settings: SettingsFactory,
    amqp: Amqp,
    mail: MailCatcher,
    mongo: AsyncMongoClient[Document],
) -> None:
    settings = notifier_settings()
    recipient = address()
    first = command(recipient)
    same_id_new_message = first.model_copy(update={"message_id": command(recipient).message_id})
    async with serve(create_app(settings)):
        await asyncio.gather(
            amqp.publish(first), amqp.publish(first), amqp.publish(same_id_new_message)
        )
        await mails_to(mail, recipient)
        deliveries = mongo[settings.database]["deliveries"]
        await eventually(
            lambda: deliveries.count_documents({"state": "delivered", "outbox_pending": False}),
            until=lambda n: n == 1,
            what="delivered record",
        )
        await amqp.publish(first)
        later = command(address())
        await amqp.publish(later)
        await mails_to(mail, later.to_address)
    assert len(await mail.to_address(recipient)) == 1
    record = await deliveries.find_one({"_id": first.notification_id})
    assert record is not None
    assert record["attempts"] == 1
    assert recipient not in str(record)


async def test_temporary_failures_retry_until_delivered(
    notifier_settings: SettingsFactory,
    amqp: Amqp,
    mail: MailCatcher,
    events: EventTap,
    mongo: AsyncMongoClient[Document],
) -> None:
    settings = notifier_settings(retry_delays_seconds=[1, 1, 1])
    notification = command(address("tempfail2"))
    async with serve(create_app(settings)):
        await amqp.publish(notification)
        (caught,) = await mails_to(mail, notification.to_address)
        assert_single_recipient(caught, notification.to_address)
        await eventually(
            events.drain,
            until=lambda _: (
                "notifier.email_delivered.v1" in events.of(notification.notification_id)
            ),
            what="delivered event",
        )
    assert events.of(notification.notification_id) == [
        "notifier.email_deferred.v1",
        "notifier.email_deferred.v1",
        "notifier.email_delivered.v1",
    ]
    record = await mongo[settings.database]["deliveries"].find_one(
        {"_id": notification.notification_id}
    )
    assert record is not None
    assert [entry["state"] for entry in record["history"]] == ["deferred", "deferred", "delivered"]
    assert [entry["smtp_code"] for entry in record["history"]] == [451, 451, 250]


async def test_permanent_failure_is_reported_once_and_not_retried(
    notifier_settings: SettingsFactory,
    amqp: Amqp,
    mail: MailCatcher,
    events: EventTap,
    mongo: AsyncMongoClient[Document],
) -> None:
    settings = notifier_settings()
    rejected = command(address("reject"))
    async with serve(create_app(settings)):
        await amqp.publish(rejected)
        failed = await eventually(
            events.drain,
            until=lambda _: bool(events.of(rejected.notification_id)),
            what="failure event",
        )
    assert events.of(rejected.notification_id) == ["notifier.email_failed.v1"]
    (event,) = [e for e in failed if e["notification_id"] == rejected.notification_id]
    assert event["smtp_code"] == 550
    assert rejected.to_address not in str(event)
    assert await mail.to_address(rejected.to_address) == []
    record = await mongo[settings.database]["deliveries"].find_one(
        {"_id": rejected.notification_id}
    )
    assert record is not None
    assert (record["state"], record["attempts"]) == ("failed", 1)


async def test_command_with_content_fields_is_parked_unsent(
    notifier_settings: SettingsFactory, amqp: Amqp, mail: MailCatcher
) -> None:
    recipient = address()
    smuggled = command(recipient).model_dump(mode="json") | {"body": "I feel worse this week"}
    async with serve(create_app(notifier_settings())):
        await amqp.publish_raw(
            json.dumps(smuggled).encode(),
            exchange=amqp.topology.commands.name,
            routing_key="notifier.send_notification.v1",
        )
        parked = await eventually(lambda: amqp.parked("notifier"), what="parked command")
    assert "body" in parked[0].reason
    assert "I feel worse" not in parked[0].reason
    assert await mail.to_address(recipient) == []


async def test_sending_rate_never_exceeds_the_configured_limit(
    notifier_settings: SettingsFactory, amqp: Amqp, mail: MailCatcher
) -> None:
    rate, burst, window, count = 10.0, 3, 2.0, 40
    # Arrival times at the catcher trail the limiter by a varying few milliseconds.
    arrival_jitter = 1
    notifications = [command(address("rate")) for _ in range(count)]
    recipients = {notification.to_address for notification in notifications}
    async with serve(create_app(notifier_settings(rate_per_second=rate, burst=burst))):
        await asyncio.gather(*(amqp.publish(notification) for notification in notifications))

        async def arrivals() -> list[datetime]:
            return sorted(
                datetime.fromisoformat(summary["Created"].replace("Z", "+00:00"))
                for summary in await mail.summaries()
                if summary["To"] and summary["To"][0]["Address"] in recipients
            )

        times = await eventually(arrivals, until=lambda found: len(found) == count, timeout=60)
    for start in times:
        in_window = sum(
            1 for moment in times if start <= moment < start + timedelta(seconds=window)
        )
        assert in_window <= rate * window + burst + arrival_jitter
