"""Use cases: send one notification exactly once, and settle sends a dead instance left open."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from sotto_contracts.base import Message, utc_now
from sotto_contracts.notifier import EmailAmbiguous, SendNotification
from sotto_kit.parking import PoisonMessageError
from sotto_notifier.composing import compose_email
from sotto_notifier.domain import (
    FINAL_STATES,
    Deferred,
    DeliveryRecord,
    DeliveryState,
    SmtpOutcome,
    delivery_event,
    draft_email,
    event_for_verdict,
    judge,
    recipient_fingerprint,
    state_after,
)
from sotto_notifier.rendering import TemplateCatalogue, TemplateFieldError

logger = logging.getLogger(__name__)


class Deliveries(Protocol):
    async def claim(
        self, command: SendNotification, recipient_fingerprint: str | None
    ) -> DeliveryRecord: ...

    async def get(self, notification_id: str) -> DeliveryRecord | None: ...

    async def start_sending(self, record: DeliveryRecord) -> bool: ...

    async def finish_attempt(
        self,
        notification_id: str,
        attempt: int,
        state: DeliveryState,
        outcome: SmtpOutcome | None,
        event: Message,
    ) -> bool: ...

    async def stale_sending(self, started_before: datetime) -> list[DeliveryRecord]: ...

    async def publish_pending(self, notification_id: str) -> None: ...


class Connection(Protocol):
    async def send(self, message: EmailMessage, *, sender: str, recipient: str) -> SmtpOutcome: ...


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

    def _email(self, command: SendNotification) -> EmailMessage:
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
        if record.state is DeliveryState.SENDING:
            if redelivered:
                await self._settle_ambiguous(record)
            # Otherwise a duplicate copy is being sent right now by its holder, who records it.
            return
        if record.state in FINAL_STATES:
            await self._deliveries.publish_pending(record.notification_id)
            return
        async with self._mailer.connection() as connection:
            if not await self._deliveries.start_sending(record):
                return
            # Taken right before the SMTP transaction, so the relay sees the configured rate
            # rather than the rate limit smeared by the database write's latency.
            await self._rate_limit.acquire()
            attempt = record.attempts + 1
            outcome = await connection.send(
                email, sender=self._policy.from_address, recipient=str(command.to_address)
            )
        verdict = judge(outcome, attempt, self._policy.retry_delays_seconds)
        event = event_for_verdict(record, verdict, attempt=attempt, outcome=outcome)
        recorded = await self._deliveries.finish_attempt(
            record.notification_id, attempt, state_after(verdict), outcome, event
        )
        if recorded and isinstance(verdict, Deferred):
            await self._retries.schedule(command, verdict.retry_in_seconds)
        await self._deliveries.publish_pending(record.notification_id)
        logger.info(
            "notification attempt finished",
            extra={
                "notification_id": record.notification_id,
                "kind": record.kind.value,
                "attempt": attempt,
                "state": state_after(verdict).value,
                "smtp_code": outcome.code,
            },
        )

    async def _settle_ambiguous(self, record: DeliveryRecord) -> bool:
        event = delivery_event(record, EmailAmbiguous, attempt=record.attempts)
        settled = await self._deliveries.finish_attempt(
            record.notification_id, record.attempts, DeliveryState.AMBIGUOUS, None, event
        )
        await self._deliveries.publish_pending(record.notification_id)
        if settled:
            logger.warning(
                "notification send was interrupted; recorded as ambiguous",
                extra={"notification_id": record.notification_id, "attempt": record.attempts},
            )
        return settled

    async def settle_stale_sends(self) -> int:
        """Sends left open longer than any live send could take belong to a dead instance."""
        started_before = utc_now() - self._policy.stale_sending_after
        settled = 0
        for record in await self._deliveries.stale_sending(started_before):
            settled += await self._settle_ambiguous(record)
        return settled
