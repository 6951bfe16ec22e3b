"""The notifier's input command and the delivery events it emits.

`SendNotification` deliberately has no free-text field: the notifier renders a fixed template
chosen by `kind`, so no message content can ever reach an email.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import EmailStr, Field, StringConstraints

from sotto_contracts.base import Command, Event, Identifier
from sotto_contracts.common import NotificationKind, ParticipantRef

PracticeDisplayName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=80, pattern=r"^[\w .,&'()-]+$"),
]
PortalLink = Annotated[
    str,
    StringConstraints(max_length=600, pattern=r"^https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$"),
]


class SendNotification(Command):
    ROUTING_KEY: ClassVar[str] = "notifier.send_notification.v1"

    notification_id: Identifier = Field(description="Idempotency key: one email per id, ever.")
    kind: NotificationKind
    recipient: ParticipantRef
    to_address: EmailStr = Field(description="The one and only recipient of this email.")
    practice_display_name: PracticeDisplayName
    link_url: PortalLink = Field(description="Where the email points: the portal, never content.")
    discreet: bool = Field(default=False, description="Neutral sender and subject.")
    conversation_id: Identifier | None = None


class DeliveryEvent(Event):
    notification_id: Identifier
    kind: NotificationKind
    recipient: ParticipantRef
    conversation_id: Identifier | None = None
    attempt: int = Field(ge=1)
    smtp_code: int | None = None
    smtp_reply: str | None = Field(
        default=None, max_length=200, description="Server's reply, with addresses stripped."
    )


class EmailDelivered(DeliveryEvent):
    ROUTING_KEY: ClassVar[str] = "notifier.email_delivered.v1"


class EmailDeferred(DeliveryEvent):
    ROUTING_KEY: ClassVar[str] = "notifier.email_deferred.v1"

    retry_in_seconds: int = Field(ge=0)


class EmailFailed(DeliveryEvent):
    ROUTING_KEY: ClassVar[str] = "notifier.email_failed.v1"


class EmailAmbiguous(DeliveryEvent):
    """The notifier stopped inside the SMTP window: the email may or may not have gone out."""

    ROUTING_KEY: ClassVar[str] = "notifier.email_ambiguous.v1"
