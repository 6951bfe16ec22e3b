"""What an email may say, and what a delivery attempt's outcome means. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from email_validator import validate_email

from sotto_contracts.common import NotificationKind, ParticipantRef
from sotto_contracts.notifier import (
    DeliveryEvent,
    EmailAmbiguous,
    EmailDeferred,
    EmailDelivered,
    EmailFailed,
    SendNotification,
)

DeliveryEventT = TypeVar("DeliveryEventT", bound=DeliveryEvent)

DISCREET_TEMPLATE = "discreet"
DISCREET_SUBJECT = "You have a new notification"
MAX_SMTP_REPLY_LENGTH = 200

TEMPLATE_FIELDS: Mapping[str, frozenset[str]] = {
    **{kind.value: frozenset({"from_name", "link_url"}) for kind in NotificationKind},
    DISCREET_TEMPLATE: frozenset({"link_url"}),
}
"""The only values each template may receive or reference; anything else is refused."""

SUBJECTS: Mapping[NotificationKind, str] = {
    NotificationKind.SECURE_MESSAGE_WAITING: "You have a new secure message",
    NotificationKind.STAFF_MESSAGE_WAITING: "A client message is waiting in your inbox",
    NotificationKind.SIGN_IN_LINK: "Your sign-in link",
    NotificationKind.APPOINTMENT_REMINDER: "You have an appointment reminder",
    NotificationKind.APPOINTMENT_CONFIRMATION: "Your appointment update is ready",
    NotificationKind.INTAKE_REQUEST: "You have forms to complete",
    NotificationKind.STATEMENT_READY: "A new document is ready",
    NotificationKind.SUPERBILL_READY: "A new document is ready",
    NotificationKind.BILLING_NOTICE: "You have a new billing notice",
    NotificationKind.CALENDAR_LINK: "Your calendar link is ready",
    NotificationKind.INQUIRY_RESPONSE: "You have a reply to your inquiry",
}


class DeliveryState(StrEnum):
    CLAIMED = "claimed"
    SENDING = "sending"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"


FINAL_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.AMBIGUOUS})
SENDABLE_STATES = frozenset({DeliveryState.CLAIMED, DeliveryState.DEFERRED})
"""`SENDING` is only found in records written by notifiers before 2026-11-22, which marked the
record before each attempt; an open SMTP window is now an `OpenWindow` (see the store)."""


class WindowOutcome(StrEnum):
    OPENED = "opened"
    """This caller, and only it, may send the attempt."""
    TAKEN = "taken"
    """Someone opened this attempt's window before: it is being sent, or may have been."""
    OUTDATED = "outdated"
    """The record moved on (a concurrent copy already sent this attempt): nothing to do."""


@dataclass(frozen=True)
class OpenWindow:
    """An attempt whose SMTP transaction started and whose window was not closed yet."""

    notification_id: str
    attempt: int
    opened_at: datetime


@dataclass(frozen=True)
class EmailDraft:
    """Which template to render with which values, and the envelope around it."""

    template: str
    fields: Mapping[str, str]
    subject: str
    sender_name: str
    to_address: str


def link_has_userinfo(link: str) -> bool:
    """`https://portal.example.org@evil.example/` opens evil.example while reading as the
    portal; no portal link carries a user name."""
    return "@" in urlsplit(link).netloc


def draft_email(command: SendNotification, neutral_sender_name: str) -> EmailDraft:
    to_address = smtp_address(str(command.to_address)) or str(command.to_address)
    if command.discreet:
        return EmailDraft(
            template=DISCREET_TEMPLATE,
            fields={"link_url": command.link_url},
            subject=DISCREET_SUBJECT,
            sender_name=neutral_sender_name,
            to_address=to_address,
        )
    return EmailDraft(
        template=command.kind.value,
        fields={"from_name": command.practice_display_name, "link_url": command.link_url},
        subject=f"{SUBJECTS[command.kind]} from {command.practice_display_name}",
        sender_name=command.practice_display_name,
        to_address=to_address,
    )


@dataclass(frozen=True)
class SmtpOutcome:
    status: Literal["accepted", "temporary", "permanent", "unknown", "unavailable"]
    """`unknown`: the message was handed over and no final reply came; it may have gone out.
    `unavailable`: the relay failed before the recipient was named (connecting, greeting,
    TLS, AUTH, MAIL FROM); that says nothing about this email, which is tried again later
    without spending an attempt."""
    code: int | None
    reply: str


NOT_ASCII_MAILBOX = SmtpOutcome(
    status="permanent", code=None, reply="the address's local part is not ASCII"
)


def smtp_address(address: str) -> str | None:
    """The address as SMTP carries it without SMTPUTF8: the domain in its IDNA (ASCII) form;
    None if the local part is not ASCII, which no relay can take that way."""
    return validate_email(address, check_deliverability=False).ascii_email


def relay_retry_delay(unavailable_for_seconds: float, retry_delays: Sequence[int]) -> int:
    """How long an email waits before trying a relay that has been failing for this long: the
    shortest retry tier at least that long, else the longest."""
    tiers = sorted(set(retry_delays))
    return next((tier for tier in tiers if tier >= unavailable_for_seconds), tiers[-1])


@dataclass(frozen=True)
class Delivered:
    pass


@dataclass(frozen=True)
class Deferred:
    retry_in_seconds: int


@dataclass(frozen=True)
class Failed:
    pass


@dataclass(frozen=True)
class Ambiguous:
    pass


Verdict = Delivered | Deferred | Failed | Ambiguous


def judge(outcome: SmtpOutcome, attempt: int, retry_delays: Sequence[int]) -> Verdict:
    """Attempt `attempt` (1-based) ended with `outcome`: done, retry later, or give up."""
    if outcome.status == "accepted":
        return Delivered()
    if outcome.status == "unknown":
        return Ambiguous()
    if outcome.status in ("temporary", "unavailable") and attempt <= len(retry_delays):
        return Deferred(retry_in_seconds=retry_delays[attempt - 1])
    return Failed()


def state_after(verdict: Verdict) -> DeliveryState:
    match verdict:
        case Delivered():
            return DeliveryState.DELIVERED
        case Deferred():
            return DeliveryState.DEFERRED
        case Failed():
            return DeliveryState.FAILED
        case Ambiguous():
            return DeliveryState.AMBIGUOUS


_ADDRESS_LIKE = re.compile(r"<[^>]*>|\S+@\S+")


def redact_reply(reply: str) -> str:
    """The server's answer for the record, with anything address-like removed."""
    return " ".join(_ADDRESS_LIKE.sub("[address]", reply).split())[:MAX_SMTP_REPLY_LENGTH]


def recipient_fingerprint(address: str, key: bytes | None) -> str | None:
    """A keyed hash that can confirm a known address but never reveal one; None without a key."""
    if key is None:
        return None
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryRecord:
    """What the notifier keeps about one notification: ids, kind, state; never an address."""

    notification_id: str
    practice_id: str
    kind: NotificationKind
    recipient: ParticipantRef
    conversation_id: str | None
    state: DeliveryState
    attempts: int


def delivery_event(
    record: DeliveryRecord,
    event_type: type[DeliveryEventT],
    *,
    attempt: int,
    outcome: SmtpOutcome | None = None,
    retry_in_seconds: int | None = None,
) -> DeliveryEventT:
    fields: dict[str, object] = {
        "practice_id": record.practice_id,
        "notification_id": record.notification_id,
        "kind": record.kind,
        "recipient": record.recipient,
        "conversation_id": record.conversation_id,
        "attempt": attempt,
        "smtp_code": None if outcome is None else outcome.code,
        "smtp_reply": None if outcome is None else redact_reply(outcome.reply),
    }
    if retry_in_seconds is not None:
        fields["retry_in_seconds"] = retry_in_seconds
    return event_type.model_validate(fields)


def event_for_verdict(
    record: DeliveryRecord, verdict: Verdict, *, attempt: int, outcome: SmtpOutcome
) -> DeliveryEvent:
    match verdict:
        case Delivered():
            return delivery_event(record, EmailDelivered, attempt=attempt, outcome=outcome)
        case Deferred(retry_in_seconds=delay):
            return delivery_event(
                record, EmailDeferred, attempt=attempt, outcome=outcome, retry_in_seconds=delay
            )
        case Failed():
            return delivery_event(record, EmailFailed, attempt=attempt, outcome=outcome)
        case Ambiguous():
            return delivery_event(record, EmailAmbiguous, attempt=attempt, outcome=outcome)
