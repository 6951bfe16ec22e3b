"""Events other practice systems publish on the inbound exchange (`practice.<name>.v1`)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import Field

from sotto_contracts.base import AwareDatetime, Identifier, InboundEvent
from sotto_contracts.common import (
    ClientEmailWorkflow,
    Contact,
    ParticipantRef,
    StaffRole,
)

PORTAL_SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


class PracticeUpserted(InboundEvent):
    """A practice exists or changed its public identity."""

    ROUTING_KEY: ClassVar[str] = "practice.practice_upserted.v1"

    slug: str = Field(
        pattern=PORTAL_SLUG_PATTERN,
        description="Portal address: /o/{slug}/messages.",
        examples=["calm-waters"],
    )
    display_name: str = Field(
        min_length=1, max_length=80, description="Name shown in the portal and email sender."
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone name; null leaves the practice's current one (new: UTC).",
        examples=["America/Chicago"],
    )


class ClientUpserted(InboundEvent):
    """A client was created or changed in the practice's records."""

    ROUTING_KEY: ClassVar[str] = "practice.client_upserted.v1"

    client_id: Identifier
    display_name: str = Field(min_length=1, max_length=120, examples=["Alex Rivera"])
    email: str | None = Field(default=None, max_length=254, examples=["alex@example.org"])
    date_of_birth: date | None = Field(
        default=None, description="Verification data for secure links; stored keyed-hashed."
    )
    primary_clinician_id: Identifier | None = None
    clinician_ids: list[Identifier] = Field(
        default_factory=list, description="Clinicians with access to this client."
    )
    messaging_enabled: bool | None = Field(
        default=None,
        description="Explicit portal messaging switch; null follows the practice's auto-enable.",
    )
    discreet: bool = Field(
        default=False, description="Use a neutral sender and subject for this client's emails."
    )
    active: bool = True
    contacts: list[Contact] = Field(default_factory=list)


class StaffUpserted(InboundEvent):
    """A team member was created or changed."""

    ROUTING_KEY: ClassVar[str] = "practice.staff_upserted.v1"

    staff_id: Identifier
    display_name: str = Field(min_length=1, max_length=120, examples=["Dr. Jordan Lee"])
    email: str | None = Field(default=None, max_length=254)
    roles: list[StaffRole] = Field(min_length=1)
    client_ids: list[Identifier] = Field(
        default_factory=list, description="Clients this team member has access to."
    )
    can_view_others_conversations: bool = False
    can_export: bool = False
    messaging_enabled: bool | None = Field(
        default=None,
        description="Explicit messaging switch; null keeps the current one (on for someone new).",
    )
    email_notifications: bool = Field(
        default=True, description="Email this team member about unread messages."
    )
    active: bool = True


class AppointmentRequested(InboundEvent):
    """A client asked for an appointment; becomes a conversation with the request details."""

    ROUTING_KEY: ClassVar[str] = "practice.appointment_requested.v1"

    request_id: Identifier
    client_id: Identifier
    clinician_id: Identifier | None = None
    requested_start: AwareDatetime | None = None
    details: str = Field(
        default="",
        max_length=5000,
        description="What the client wrote; stays inside Conversations.",
    )


class InquiryReceived(InboundEvent):
    """A prospective client contacted the practice; becomes a standard conversation."""

    ROUTING_KEY: ClassVar[str] = "practice.inquiry_received.v1"

    inquiry_id: Identifier
    client_id: Identifier = Field(description="Id the practice system gave the prospect.")
    display_name: str = Field(min_length=1, max_length=120)
    email: str | None = Field(default=None, max_length=254)
    clinician_id: Identifier | None = None
    body: str = Field(default="", max_length=5000)


class ClientEmailWorkflowEvent(InboundEvent):
    """A practice system wants a client email sent; see the routing setting."""

    WORKFLOW: ClassVar[ClientEmailWorkflow]

    client_id: Identifier
    recipients: list[ParticipantRef] = Field(
        default_factory=list,
        description="Client and/or contacts to notify; empty means the client alone.",
    )
    reference_id: Identifier = Field(description="Id of the statement, appointment, form...")
    content: str = Field(
        default="",
        max_length=5000,
        description="Details for the secure message; never put in an email.",
    )


class AppointmentReminder(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.appointment_reminder.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.APPOINTMENT_REMINDER


class AppointmentConfirmation(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.appointment_confirmation.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.APPOINTMENT_CONFIRMATION


class IntakeRequest(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.intake_request.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.INTAKE_REQUEST


class StatementReady(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.statement_ready.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.STATEMENT_READY


class SuperbillReady(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.superbill_ready.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.SUPERBILL_READY


class BillingNotice(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.billing_notice.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.BILLING_NOTICE


class CalendarLink(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.calendar_link.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.CALENDAR_LINK


class InquiryResponse(ClientEmailWorkflowEvent):
    ROUTING_KEY: ClassVar[str] = "practice.inquiry_response.v1"
    WORKFLOW: ClassVar[ClientEmailWorkflow] = ClientEmailWorkflow.INQUIRY_RESPONSE


CLIENT_EMAIL_WORKFLOW_EVENTS: tuple[type[ClientEmailWorkflowEvent], ...] = (
    AppointmentReminder,
    AppointmentConfirmation,
    IntakeRequest,
    StatementReady,
    SuperbillReady,
    BillingNotice,
    CalendarLink,
    InquiryResponse,
)

__all__ = [
    "CLIENT_EMAIL_WORKFLOW_EVENTS",
    "AppointmentConfirmation",
    "AppointmentReminder",
    "AppointmentRequested",
    "BillingNotice",
    "CalendarLink",
    "ClientEmailWorkflowEvent",
    "ClientUpserted",
    "InquiryReceived",
    "InquiryResponse",
    "IntakeRequest",
    "PracticeUpserted",
    "StaffUpserted",
    "StatementReady",
    "SuperbillReady",
]
