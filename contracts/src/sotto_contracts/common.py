"""Value types used across contracts."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from sotto_contracts.base import Contract, Identifier


class StaffRole(StrEnum):
    OWNER = "owner"
    PRACTICE_MANAGER = "practice_manager"
    CLINICIAN = "clinician"
    SUPERVISOR = "supervisor"
    BILLER = "biller"
    SCHEDULER = "scheduler"


# Whom a client may write to besides their primary clinician (DESIGN.md section 5), in the
# order a team member holding several of these roles is labelled by.
CLIENT_REACHABLE_ROLES = (StaffRole.PRACTICE_MANAGER, StaffRole.BILLER, StaffRole.SCHEDULER)


class ParticipantKind(StrEnum):
    CLIENT = "client"
    CONTACT = "contact"
    STAFF = "staff"


class ContactRelation(StrEnum):
    FAMILY = "family"
    PARTNER = "partner"
    REPRESENTATIVE = "representative"


class ParticipantRef(Contract):
    """Who someone is, by id only: never an address."""

    kind: ParticipantKind
    id: Identifier


class Contact(Contract):
    """A person connected to a client who may receive portal notices."""

    contact_id: Identifier
    relation: ContactRelation
    display_name: str = Field(max_length=120, description="Name shown to staff in the inbox.")
    email: str | None = Field(
        default=None, max_length=254, description="Delivery address; only the gateway keeps it."
    )
    date_of_birth: date | None = Field(
        default=None, description="Verification data; stored keyed-hashed by the gateway."
    )
    messaging_enabled: bool = True
    can_message: bool = Field(
        default=True, description="Whether this contact may read and reply in the portal."
    )


class NotificationKind(StrEnum):
    """The fixed catalogue of generic emails; each has one template in the notifier."""

    SECURE_MESSAGE_WAITING = "secure_message_waiting"
    STAFF_MESSAGE_WAITING = "staff_message_waiting"
    SIGN_IN_LINK = "sign_in_link"
    APPOINTMENT_REMINDER = "appointment_reminder"
    APPOINTMENT_CONFIRMATION = "appointment_confirmation"
    INTAKE_REQUEST = "intake_request"
    STATEMENT_READY = "statement_ready"
    SUPERBILL_READY = "superbill_ready"
    BILLING_NOTICE = "billing_notice"
    CALENDAR_LINK = "calendar_link"
    INQUIRY_RESPONSE = "inquiry_response"


class ClientEmailWorkflow(StrEnum):
    """Client-email workflows other practice systems trigger."""

    APPOINTMENT_REMINDER = "appointment_reminder"
    APPOINTMENT_CONFIRMATION = "appointment_confirmation"
    INTAKE_REQUEST = "intake_request"
    STATEMENT_READY = "statement_ready"
    SUPERBILL_READY = "superbill_ready"
    BILLING_NOTICE = "billing_notice"
    CALENDAR_LINK = "calendar_link"
    INQUIRY_RESPONSE = "inquiry_response"
