"""Use cases: send one notification exactly once, and settle sends a dead instance left open."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sotto_contracts.base import Message, utc_now
from sotto_contracts.notifier import EmailAmbiguous, SendNotification
from sotto_kit.parking import PoisonMessageError
from sotto_notifier.composing import compose_email
from sotto_notifier.domain import (
    FINAL_STATES,
    NOT_ASCII_MAILBOX,
    Deferred,
    DeliveryRecord,
    DeliveryState,
    OpenWindow,
    SmtpOutcome,
    WindowOutcome,
    delivery_event,
    draft_email,
    event_for_verdict,
    judge,
    link_has_userinfo,
    recipient_fingerprint,
    redact_reply,
    relay_retry_delay,
    smtp_address,
    state_after,
)
from sotto_notifier.rendering import TemplateCatalogue, TemplateFieldError

logger = logging.getLogger(__name__)


class Deliveries(Protocol):
    async def claim(
        self, command: SendNotification, recipient_fingerprint: str | None
    ) -> DeliveryRecord: ...

    async def get(self, notification_id: str) -> DeliveryRecord | None: ...

    async def open_window(self, notification_id: str, attempt: int) -> WindowOutcome: ...

    async def record_attempt(
        self,
        notification_id: str,
        attempt: int,
        state: DeliveryState,
        outcome: SmtpOutcome | None,
        event: Message,
    ) -> Mapping[str, Any] | None: ...

    async def publish_events(self, notification_id: str, entries: Mapping[str, Any]) -> None: ...

    async def publish_pending(self, notification_id: str) -> int: ...

    async def close_window(self, notification_id: str, attempt: int) -> None: ...

    async def open_windows(self, opened_before: datetime) -> list[OpenWindow]: ...

    async def window(self, notification_id: str, attempt: int) -> OpenWindow | None: ...


class Connection(Protocol):
    async def envelope(self, *, sender: str, recipient: str) -> SmtpOutcome | None: ...

    async def hand_over(self, message: bytes) -> SmtpOutcome: ...

    async def reset(self) -> None: ...


class Mailer(Protocol):
    def connection(self) -> AbstractAsyncContextManager[Connection]: ...


class Retries(Protocol):
    async def schedule(self, command: SendNotification, delay_seconds: int) -> None: ...


class RateLimit(Protocol):
    async def acquire(self, amount: float = 1) -> None: ...


@dataclass(frozen=True)
class SendingPolicy:
    from_address: str
    neutral_sender_name: str
    retry_delays_seconds: Sequence[int]
    address_hash_key: bytes | None
    stale_sending_after: timedelta
    republish_after: timedelta = timedelta(seconds=2)
    """An open window whose result is recorded gets its events published by the sweep after
    this long (the sender publishes them itself right after recording)."""


class NotificationSender:
    def __init__(
        self,
        *,
        deliveries: Deliveries,
        mailer: Mailer,
        retries: Retries,
        rate_limit: RateLimit,
        catalogue: TemplateCatalogue,
        policy: SendingPolicy,
    ) -> None:
        self._deliveries = deliveries
        self._mailer = mailer
        self._retries = retries
        self._rate_limit = rate_limit
        self._catalogue = catalogue
        self._policy = policy
        self._relay_failing_since: float | None = None

    def _email(self, command: SendNotification) -> bytes:
        if link_has_userinfo(command.link_url):
            raise PoisonMessageError("the link carries user information")
        draft = draft_email(command, self._policy.neutral_sender_name)
        try:
            body = self._catalogue.render(draft.template, draft.fields)
        except TemplateFieldError as error:
            raise PoisonMessageError(str(error)) from error
        return compose_email(
            draft,
            body,
            from_address=self._policy.from_address,
            notification_id=command.notification_id,
        )

    async def handle(self, command: SendNotification, *, redelivered: bool) -> None:
        """Send unless this notification was already sent or may have been (then: ambiguous)."""
        email = self._email(command)
        fingerprint = recipient_fingerprint(str(command.to_address), self._policy.address_hash_key)
        record = await self._deliveries.claim(command, fingerprint)
        if record.state in FINAL_STATES:
            await self._deliveries.publish_pending(record.notification_id)
            return
        if record.state is DeliveryState.SENDING:  # left by an older notifier version
            if redelivered:
                await self._settle_ambiguous(record, record.attempts)
            return
        attempt = record.attempts + 1
        recipient = smtp_address(str(command.to_address))
        if recipient is None:
            if await self._take_window(record.notification_id, attempt, redelivered=redelivered):
                await self._finish(command, record, attempt, NOT_ASCII_MAILBOX)
            return
        async with self._mailer.connection() as connection:
            refusal = await connection.envelope(
                sender=self._policy.from_address, recipient=recipient
            )
            if refusal is not None and refusal.status == "unavailable":
                await self._wait_for_relay(command, refusal)
                return
            self._relay_failing_since = None
            if refusal is None:
                # Taken after the envelope, so the relay sees messages at the configured rate
                # even when connecting took some sends longer than others: otherwise the sends
                # queued behind a slow one would all hand over at once. Not inside the window,
                # whose holder must not wait on anything before handing the message over.
                await self._rate_limit.acquire()
            # As late as possible: a window left open (an error, a cancellation, a crash) is
            # settled as ambiguous and never sent, so only handing the message over may follow.
            # A refusal needs the window too: only its holder may record the attempt's result.
            if not await self._take_window(
                record.notification_id, attempt, redelivered=redelivered
            ):
                await connection.reset()
                return
            outcome = await connection.hand_over(email) if refusal is None else refusal
        await self._finish(command, record, attempt, outcome)

    async def _finish(
        self, command: SendNotification, record: DeliveryRecord, attempt: int, outcome: SmtpOutcome
    ) -> None:
        """Record the result of the attempt whose window this caller holds, then close it."""
        verdict = judge(outcome, attempt, self._policy.retry_delays_seconds)
        event = event_for_verdict(record, verdict, attempt=attempt, outcome=outcome)
        queued = await self._deliveries.record_attempt(
            record.notification_id, attempt, state_after(verdict), outcome, event
        )
        if queued is not None and isinstance(verdict, Deferred):
            await self._retries.schedule(command, verdict.retry_in_seconds)
        await self._deliveries.publish_events(record.notification_id, queued or {})
        await self._deliveries.close_window(record.notification_id, attempt)
        logger.info(
            "notification attempt finished",
            extra={
                "notification_id": record.notification_id,
                "kind": record.kind.value,
                "attempt": attempt,
                "state": state_after(verdict).value if queued is not None else "superseded",
                "smtp_code": outcome.code,
            },
        )

    async def _wait_for_relay(self, command: SendNotification, failure: SmtpOutcome) -> None:
        """Nothing was handed over and nothing is recorded: the command comes back after a
        wait that grows with how long the relay has been failing, as often as it takes."""
        now = time.monotonic()
        if self._relay_failing_since is None:
            self._relay_failing_since = now
        delay = relay_retry_delay(
            now - self._relay_failing_since, self._policy.retry_delays_seconds
        )
        await self._retries.schedule(command, delay)
        logger.warning(
            "SMTP relay unavailable; notification waits for it",
            extra={
                "notification_id": command.notification_id,
                "smtp_code": failure.code,
                "smtp_reply": redact_reply(failure.reply),
                "retry_in_seconds": delay,
            },
        )

    async def _take_window(self, notification_id: str, attempt: int, *, redelivered: bool) -> bool:
        """Whether this caller, and only it, may send `attempt` and record its result."""
        window = await self._deliveries.open_window(notification_id, attempt)
        if window is WindowOutcome.TAKEN and redelivered:
            # This command was handed out before and not acknowledged: its holder may have
            # died with the window open, maybe after the relay took the email, or may still be
            # sending (the broker connection dropped). Only a window older than any live send
            # is the former's.
            held = await self._deliveries.window(notification_id, attempt)
            stale = (
                held is not None and held.opened_at < utc_now() - self._policy.stale_sending_after
            )
            await self._settle_window(notification_id, attempt, ambiguous=stale)
        # Otherwise a duplicate copy is being sent right now by its holder, who records it, or
        # was already sent.
        return window is WindowOutcome.OPENED

    async def _settle_ambiguous(self, record: DeliveryRecord, attempt: int) -> None:
        event = delivery_event(record, EmailAmbiguous, attempt=attempt)
        queued = await self._deliveries.record_attempt(
            record.notification_id, attempt, DeliveryState.AMBIGUOUS, None, event
        )
        await self._deliveries.publish_events(record.notification_id, queued or {})
        await self._deliveries.close_window(record.notification_id, attempt)
        logger.warning(
            "notification send was interrupted; recorded as ambiguous",
            extra={"notification_id": record.notification_id, "attempt": attempt},
        )

    async def sweep_windows(self) -> int:
        """Settle windows a dead or interrupted instance left open; how many were settled.

        A window whose attempt has its result recorded only needs its events published and
        the window closed. One without a result, open longer than any live send could take,
        belongs to a dead instance: the email may have gone out, so it is ambiguous.
        """
        now = utc_now()
        settled = 0
        for window in await self._deliveries.open_windows(now - self._policy.republish_after):
            stale = window.opened_at < now - self._policy.stale_sending_after
            settled += await self._settle_window(
                window.notification_id, window.attempt, ambiguous=stale
            )
        return settled

    async def _settle_window(self, notification_id: str, attempt: int, *, ambiguous: bool) -> bool:
        """Close an open window: publish its recorded result, or (if `ambiguous`) record that
        the attempt may or may not have been sent. False if the window was left open."""
        record = await self._deliveries.get(notification_id)
        recorded = (
            record is not None
            and record.attempts >= attempt
            and record.state is not DeliveryState.SENDING
        )
        if record is None or recorded:
            await self._deliveries.publish_pending(notification_id)
            await self._deliveries.close_window(notification_id, attempt)
            return True
        if ambiguous:
            await self._settle_ambiguous(record, attempt)
            return True
        return False
