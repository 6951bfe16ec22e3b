"""Events the portal gateway emits about links, verification, sessions and staff access."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from sotto_contracts.base import AwareDatetime, Event, Identifier
from sotto_contracts.common import ParticipantRef


class GatewayEvent(Event):
    pass


class LinkIssued(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.link_issued.v1"

    link_id: Identifier = Field(description="Public id of the link record, never the token.")
    recipient: ParticipantRef
    conversation_id: Identifier
    expires_at: AwareDatetime
    notification_id: Identifier


class LinkOpened(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.link_opened.v1"

    link_id: Identifier
    recipient: ParticipantRef
    conversation_id: Identifier


class LinkRefusalReason(StrEnum):
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"


class LinkRefused(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.link_refused.v1"

    link_id: Identifier
    recipient: ParticipantRef
    reason: LinkRefusalReason


class LinkRevoked(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.link_revoked.v1"

    link_id: Identifier
    recipient: ParticipantRef
    conversation_id: Identifier


class VerificationFailed(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.verification_failed.v1"

    link_id: Identifier
    recipient: ParticipantRef
    failed_attempts: int = Field(ge=1)


class VerificationSucceeded(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.verification_succeeded.v1"

    link_id: Identifier
    recipient: ParticipantRef


class LinkLocked(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.link_locked.v1"

    link_id: Identifier
    recipient: ParticipantRef


class SignInRequested(GatewayEvent):
    """Recorded whether or not the address was known; `recipient` only when it was."""

    ROUTING_KEY: ClassVar[str] = "gateway.sign_in_requested.v1"

    recipient: ParticipantRef | None = None
    notification_id: Identifier | None = None


class SessionStarted(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.session_started.v1"

    session_ref: Identifier = Field(description="Public reference of the session, not its key.")
    principal: ParticipantRef
    conversation_id: Identifier | None = Field(
        default=None, description="Set when the session is scoped to one conversation."
    )
    via: str = Field(description="secure_link, sign_in_link or identity_switch", max_length=32)


class SessionEnded(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.session_ended.v1"

    session_ref: Identifier
    principal: ParticipantRef
    reason: str = Field(
        description="sign_out, idle_timeout, absolute_timeout, switched_identity or replaced "
        "(another session started in the same browser)",
        max_length=32,
    )


class StaffViewedConversation(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.staff_viewed_conversation.v1"

    staff_id: Identifier
    conversation_id: Identifier
    client_id: Identifier | None = None


class StaffViewedTranscript(GatewayEvent):
    """A client's transcript (every conversation with them) was shown to a team member."""

    ROUTING_KEY: ClassVar[str] = "gateway.staff_viewed_transcript.v1"

    staff_id: Identifier
    client_id: Identifier


class StaffCopiedMessages(GatewayEvent):
    """Selected messages of a conversation were given to a team member as text to copy."""

    ROUTING_KEY: ClassVar[str] = "gateway.staff_copied_messages.v1"

    staff_id: Identifier
    conversation_id: Identifier
    client_id: Identifier | None = None
    posted_message_ids: list[Identifier] = Field(min_length=1, max_length=500)


class ClientViewedConversation(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.client_viewed_conversation.v1"

    principal: ParticipantRef
    conversation_id: Identifier


class ExportMade(GatewayEvent):
    ROUTING_KEY: ClassVar[str] = "gateway.export_made.v1"

    staff_id: Identifier
    scope: str = Field(description="practice, clinician:<id> or client:<id>", max_length=100)
    password_protected: bool
