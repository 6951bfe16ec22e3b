"""The notification sender against fakes: only a send that may really have reached the relay
is settled as ambiguous; one interrupted before that is sent when its command comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest

from sotto_contracts.base import Message, utc_now
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import (
    EmailAmbiguous,
    EmailDelivered,
    EmailFailed,
    SendNotification,
)
from sotto_kit.parking import PoisonMessageError
from sotto_notifier.domain import (
    FINAL_STATES,
    SENDABLE_STATES,
    DeliveryRecord,
    DeliveryState,
    OpenWindow,
    SmtpOutcome,
    WindowOutcome,
)
from sotto_notifier.handlers import NotificationSender, SendingPolicy
from sotto_notifier.rendering import TemplateCatalogue

Stage = Literal["rate limit", "envelope", "hand over"]
ACCEPTED = SmtpOutcome(status="accepted", code=250, reply="OK queued")
NO_REPLY = SmtpOutcome(status="unknown", code=None, reply="SMTPReadTimeoutError")
STALE_AFTER = timedelta(minutes=5)
RELAY_DOWN = SmtpOutcome(status="unavailable", code=535, reply="5.7.8 authentication failed")


class Interrupted:
    """Raises `CancelledError` once, at `stage`, as a stopping instance's send would; `reached`
    lists the stages a send got to, in order."""

    def __init__(self, stage: Stage | None) -> None:
        self._stage = stage
        self.reached: list[Stage] = []

    def at(self, stage: Stage) -> None:
        self.reached.append(stage)
        if stage == self._stage:
            self._stage = None
            raise asyncio.CancelledError


class FakeDeliveries:
    """Delivery records and SMTP windows in memory, with the store's rules."""

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}
        self.windows: dict[tuple[str, int], datetime] = {}
        self.published: list[Message] = []
        self._outboxes: dict[str, list[Message]] = {}

    async def claim(
        self, command: SendNotification, recipient_fingerprint: str | None
    ) -> DeliveryRecord:
        return self.records.setdefault(
            command.notification_id,
            DeliveryRecord(
                notification_id=command.notification_id,
                practice_id=command.practice_id,
                kind=command.kind,
                recipient=command.recipient,
                conversation_id=command.conversation_id,
                state=DeliveryState.CLAIMED,
                attempts=0,
            ),
        )

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        return self.records.get(notification_id)

    async def open_window(self, notification_id: str, attempt: int) -> WindowOutcome:
        if (notification_id, attempt) in self.windows:
            return WindowOutcome.TAKEN
        current = self.records.get(notification_id)
        if current is None or current.attempts != attempt - 1:
            return WindowOutcome.OUTDATED
        if current.state not in SENDABLE_STATES:
            return WindowOutcome.OUTDATED
        self.windows[(notification_id, attempt)] = utc_now()
        return WindowOutcome.OPENED

    async def record_attempt(
        self,
        notification_id: str,
        attempt: int,
        state: DeliveryState,
        outcome: SmtpOutcome | None,
        event: Message,
    ) -> Mapping[str, Any] | None:
        if self.records[notification_id].state in FINAL_STATES:
            return None
        self.records[notification_id] = replace(
            self.records[notification_id], state=state, attempts=attempt
        )
        self._outboxes.setdefault(notification_id, []).append(event)
        return {str(event.message_id): event}

    async def publish_events(self, notification_id: str, entries: Mapping[str, Any]) -> None:
        await self.publish_pending(notification_id)

    async def publish_pending(self, notification_id: str) -> int:
        pending = self._outboxes.pop(notification_id, [])
        self.published.extend(pending)
        return len(pending)

    async def close_window(self, notification_id: str, attempt: int) -> None:
        self.windows.pop((notification_id, attempt), None)

    async def open_windows(self, opened_before: datetime) -> list[OpenWindow]:
        return [
            OpenWindow(notification_id, attempt, opened_at)
            for (notification_id, attempt), opened_at in self.windows.items()
            if opened_at < opened_before
        ]

    async def window(self, notification_id: str, attempt: int) -> OpenWindow | None:
        opened_at = self.windows.get((notification_id, attempt))
        return None if opened_at is None else OpenWindow(notification_id, attempt, opened_at)

    def age_windows(self, by: timedelta) -> None:
        self.windows = {key: opened_at - by for key, opened_at in self.windows.items()}


class FakeRelay:
    """One connection to a relay that refuses the envelope with `refusal`, or takes it and
    answers the message with `outcome`; `sent` holds the messages handed over."""

    def __init__(
        self,
        interrupted: Interrupted,
        outcome: SmtpOutcome = ACCEPTED,
        refusal: SmtpOutcome | None = None,
        *,
        down_for: int = 0,
    ) -> None:
        self._interrupted = interrupted
        self._outcome = outcome
        self._refusal = refusal
        self._down_for = down_for
        self.recipients: list[str] = []
        self.sent: list[bytes] = []
        self.resets = 0

    async def envelope(self, *, sender: str, recipient: str) -> SmtpOutcome | None:
        self._interrupted.at("envelope")
        if self._down_for > 0:
            self._down_for -= 1
            return RELAY_DOWN
        self.recipients.append(recipient)
        return self._refusal

    async def hand_over(self, message: bytes) -> SmtpOutcome:
        self.sent.append(message)
        self._interrupted.at("hand over")
        return self._outcome

    async def reset(self) -> None:
        self.resets += 1

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeRelay]:
        yield self


class FakeRateLimit:
    def __init__(self, interrupted: Interrupted) -> None:
        self._interrupted = interrupted

    async def acquire(self, amount: float = 1) -> None:
        self._interrupted.at("rate limit")


class FakeRetries:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, int]] = []

    async def schedule(self, command: SendNotification, delay_seconds: int) -> None:
        self.scheduled.append((command.notification_id, delay_seconds))


def notification(to_address: str = "client@example.org") -> SendNotification:
    return SendNotification(
        practice_id="p1",
        notification_id="n1",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        to_address=to_address,
        practice_display_name="Lakeside Counseling",
        link_url="https://portal.example.org/l/abc123",
    )


def sender_with(
    deliveries: FakeDeliveries, relay: FakeRelay, retries: FakeRetries, interrupted: Interrupted
) -> NotificationSender:
    return NotificationSender(
        deliveries=deliveries,
        mailer=relay,
        retries=retries,
        rate_limit=FakeRateLimit(interrupted),
        catalogue=TemplateCatalogue(),
        policy=SendingPolicy(
            from_address="no-reply@sotto.example",
            neutral_sender_name="Secure portal",
            retry_delays_seconds=[1, 5],
            address_hash_key=None,
            stale_sending_after=STALE_AFTER,
        ),
    )


@pytest.mark.parametrize(
    ("stage", "sent", "state", "event"),
    [
        ("rate limit", 1, DeliveryState.DELIVERED, EmailDelivered),
        ("envelope", 1, DeliveryState.DELIVERED, EmailDelivered),
        ("hand over", 1, DeliveryState.AMBIGUOUS, EmailAmbiguous),
    ],
)
async def test_a_send_interrupted_is_resent_only_if_the_message_was_not_handed_over(
    stage: Stage, sent: int, state: DeliveryState, event: type[Message]
) -> None:
    interrupted = Interrupted(stage)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    sender = sender_with(deliveries, relay, retries, interrupted)
    with pytest.raises(asyncio.CancelledError):
        await sender.handle(notification(), redelivered=False)
    await sender.handle(notification(), redelivered=True)
    deliveries.age_windows(STALE_AFTER)
    await sender.sweep_windows()
    assert len(relay.sent) == sent
    assert (deliveries.records["n1"].state, deliveries.records["n1"].attempts) == (state, 1)
    assert [type(published) for published in deliveries.published] == [event]
    assert deliveries.windows == {}
    assert retries.scheduled == []


async def test_the_rate_limit_paces_hand_overs_not_envelopes() -> None:
    """Sends queued behind one slow to connect would otherwise hand over all at once."""
    interrupted = Interrupted(None)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification(), redelivered=False)
    assert interrupted.reached == ["envelope", "rate limit", "hand over"]


async def test_a_message_handed_over_without_a_reply_is_ambiguous_and_never_retried() -> None:
    interrupted = Interrupted(None)
    deliveries, retries = FakeDeliveries(), FakeRetries()
    relay = FakeRelay(interrupted, NO_REPLY)
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification(), redelivered=False)
    await sender.handle(notification(), redelivered=True)
    assert len(relay.sent) == 1
    assert deliveries.records["n1"].state is DeliveryState.AMBIGUOUS
    (published,) = deliveries.published
    assert isinstance(published, EmailAmbiguous)
    assert (published.smtp_code, published.smtp_reply) == (None, "SMTPReadTimeoutError")
    assert retries.scheduled == []
    assert deliveries.windows == {}


async def test_a_refused_recipient_is_recorded_and_nothing_is_handed_over() -> None:
    interrupted = Interrupted(None)
    deliveries, retries = FakeDeliveries(), FakeRetries()
    refusal = SmtpOutcome(status="permanent", code=550, reply="no such user")
    relay = FakeRelay(interrupted, refusal=refusal)
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification(), redelivered=False)
    assert relay.sent == []
    assert interrupted.reached == ["envelope"]
    assert deliveries.records["n1"].state is DeliveryState.FAILED
    assert [type(published) for published in deliveries.published] == [EmailFailed]
    assert deliveries.windows == {}


async def test_a_copy_whose_window_is_taken_hands_nothing_over_and_resets_the_envelope() -> None:
    interrupted = Interrupted(None)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    deliveries.windows[("n1", 1)] = utc_now()
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification(), redelivered=False)
    assert (relay.sent, relay.resets) == ([], 1)
    assert deliveries.records["n1"].state is DeliveryState.CLAIMED
    assert deliveries.published == []


async def test_a_relay_failing_longer_than_every_retry_spends_no_attempt_and_delivers_once() -> (
    None
):
    interrupted = Interrupted(None)
    deliveries, retries = FakeDeliveries(), FakeRetries()
    relay = FakeRelay(interrupted, down_for=6)
    sender = sender_with(deliveries, relay, retries, interrupted)
    for _ in range(7):  # the command coming back after each wait
        await sender.handle(notification(), redelivered=False)
    assert len(relay.sent) == 1
    assert (deliveries.records["n1"].state, deliveries.records["n1"].attempts) == (
        DeliveryState.DELIVERED,
        1,
    )
    assert [type(published) for published in deliveries.published] == [EmailDelivered]
    assert len(retries.scheduled) == 6
    assert deliveries.windows == {}


async def test_a_mailbox_name_that_is_not_ascii_fails_once_without_reaching_the_relay() -> None:
    interrupted = Interrupted(None)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification("jöhn@example.org"), redelivered=False)
    assert interrupted.reached == []
    assert (deliveries.records["n1"].state, deliveries.records["n1"].attempts) == (
        DeliveryState.FAILED,
        1,
    )
    (published,) = deliveries.published
    assert isinstance(published, EmailFailed)
    assert published.smtp_code is None
    assert (retries.scheduled, deliveries.windows) == ([], {})


async def test_an_international_domain_is_sent_in_its_ascii_form() -> None:
    interrupted = Interrupted(None)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    sender = sender_with(deliveries, relay, retries, interrupted)
    await sender.handle(notification("user@bücher.de"), redelivered=False)
    assert relay.recipients == ["user@xn--bcher-kva.de"]
    (sent,) = relay.sent
    assert b"\nTo: user@xn--bcher-kva.de\n" in sent
    assert deliveries.records["n1"].state is DeliveryState.DELIVERED


class HeldRelay(FakeRelay):
    """Hands the message over only once `release` is set: a send in progress."""

    def __init__(self, interrupted: Interrupted) -> None:
        super().__init__(interrupted)
        self.release = asyncio.Event()
        self.handing_over = asyncio.Event()

    async def hand_over(self, message: bytes) -> SmtpOutcome:
        self.handing_over.set()
        await self.release.wait()
        return await super().hand_over(message)


@pytest.mark.parametrize(
    ("held_for", "state", "events"),
    [
        (timedelta(0), DeliveryState.DELIVERED, [EmailDelivered]),
        (STALE_AFTER, DeliveryState.AMBIGUOUS, [EmailAmbiguous]),
    ],
)
async def test_a_redelivered_copy_settles_a_window_as_ambiguous_only_once_it_is_stale(
    held_for: timedelta, state: DeliveryState, events: list[type[Message]]
) -> None:
    interrupted = Interrupted(None)
    deliveries, retries = FakeDeliveries(), FakeRetries()
    holder_relay = HeldRelay(interrupted)
    holder = sender_with(deliveries, holder_relay, retries, interrupted)
    sending = asyncio.create_task(holder.handle(notification(), redelivered=False))
    await holder_relay.handing_over.wait()
    deliveries.age_windows(held_for)
    copy_relay = FakeRelay(interrupted)
    copy = sender_with(deliveries, copy_relay, retries, interrupted)
    await copy.handle(notification(), redelivered=True)
    holder_relay.release.set()
    await sending
    assert copy_relay.sent == []
    assert deliveries.records["n1"].state is state
    assert [type(published) for published in deliveries.published] == events
    assert deliveries.windows == {}


async def test_a_link_with_user_information_is_refused_before_anything_is_claimed() -> None:
    interrupted = Interrupted(None)
    deliveries, relay, retries = FakeDeliveries(), FakeRelay(interrupted), FakeRetries()
    sender = sender_with(deliveries, relay, retries, interrupted)
    disguised = notification().model_copy(
        update={"link_url": "https://portal.example.org@evil.example/l/abc123"}
    )
    with pytest.raises(PoisonMessageError):
        await sender.handle(disguised, redelivered=False)
    assert (deliveries.records, relay.sent, interrupted.reached) == ({}, [], [])
