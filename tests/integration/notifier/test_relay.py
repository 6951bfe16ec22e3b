"""A failing relay is waited for, never held against the emails; addresses go out in ASCII."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from pymongo import AsyncMongoClient

from sotto_kit.mongo import Document
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app
from tests.integration.notifier.support import EventTap, address, command, own_catcher
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.serving import serve
from tests.support.waiting import eventually

SettingsFactory = Callable[..., NotifierSettings]
DELIVERED = "notifier.email_delivered.v1"


async def test_a_relay_refusing_longer_than_every_retry_delivers_once_when_it_recovers(
    notifier_settings: SettingsFactory,
    amqp: Amqp,
    events: EventTap,
    mongo: AsyncMongoClient[Document],
) -> None:
    delays = [1, 1]
    refusals = 5  # more than the attempts the retry tiers allow an email
    async with own_catcher() as catcher:
        settings = notifier_settings(
            smtp_port=catcher.smtp_port,
            retry_delays_seconds=delays,
            from_address=f"relaydown{refusals}+{uuid.uuid4().hex[:12]}@sotto.example.org",
        )
        notification = command(address())
        mail = MailCatcher(catcher.api_url)
        started = time.monotonic()
        try:
            async with serve(create_app(settings)):
                await amqp.publish(notification)
                await eventually(
                    events.drain,
                    until=lambda _: bool(events.of(notification.notification_id)),
                    timeout=60,
                    what="the notification's event",
                )
                waited = time.monotonic() - started
            caught = await mail.to_address(notification.to_address)
        finally:
            await mail.close()
    assert waited > sum(delays)
    assert events.of(notification.notification_id) == [DELIVERED]
    assert len(caught) == 1
    record = await mongo[settings.database]["deliveries"].find_one(
        {"_id": notification.notification_id}
    )
    assert record is not None
    assert (record["state"], record["attempts"]) == ("delivered", 1)
    assert [entry["state"] for entry in record["history"]] == ["delivered"]


async def test_an_international_domain_is_delivered_in_ascii_and_a_non_ascii_mailbox_fails(
    notifier_settings: SettingsFactory,
    amqp: Amqp,
    mail: MailCatcher,
    events: EventTap,
    mongo: AsyncMongoClient[Document],
) -> None:
    settings = notifier_settings()
    marker = uuid.uuid4().hex[:12]
    international = command(f"idn+{marker}@bücher.example.org")
    unsendable = command(f"jöhn+{marker}@example.org")
    async with serve(create_app(settings)):
        await amqp.publish(international)
        await amqp.publish(unsendable)
        await eventually(
            events.drain,
            until=lambda _: all(
                events.of(sent.notification_id) for sent in (international, unsendable)
            ),
            what="both notifications' events",
        )
    ascii_address = f"idn+{marker}@xn--bcher-kva.example.org"
    (caught,) = await mail.to_address(ascii_address)
    assert (caught.to, caught.envelope_recipients) == ([ascii_address], [ascii_address])
    assert events.of(international.notification_id) == [DELIVERED]
    assert events.of(unsendable.notification_id) == ["notifier.email_failed.v1"]
    record = await mongo[settings.database]["deliveries"].find_one(
        {"_id": unsendable.notification_id}
    )
    assert record is not None
    assert (record["state"], record["attempts"]) == ("failed", 1)
