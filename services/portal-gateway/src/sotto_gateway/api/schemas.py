"""Request and response bodies of the HTTP API (contract models are reused where they fit)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sotto_contracts.base import Identifier
from sotto_contracts.common import ParticipantRef
from sotto_contracts.conversations import MessageView

MAX_BODY_CHARACTERS = 20_000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(Body):
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARACTERS)
    message_id: Identifier | None = Field(
        default=None, description="Client-chosen id; repeating it does not post twice."
    )


class OpenConversationIn(Body):
    subject: str = Field(min_length=1, max_length=200)
    client_id: Identifier | None = None
    participants: list[ParticipantRef] = Field(default_factory=list, max_length=50)
    first_message: str | None = Field(default=None, min_length=1, max_length=MAX_BODY_CHARACTERS)
    conversation_id: Identifier | None = None


class ClientConversationIn(Body):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARACTERS)
    conversation_id: Identifier | None = None
    recipient_id: Identifier | None = Field(
        default=None,
        description="The team member to write to (see GET /api/client/recipients); "
        "the primary clinician when left out.",
    )


class AssignIn(Body):
    assignee_id: Identifier


class NoteIn(Body):
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARACTERS)
    note_id: Identifier | None = None


class TaskIn(Body):
    title: str = Field(min_length=1, max_length=200)
    assignee_id: Identifier | None = None
    due: date | None = None
    task_id: Identifier | None = None


class TaskPatch(Body):
    done: bool | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    assignee_id: Identifier | None = None
    due: date | None = None


class CopyIn(Body):
    message_ids: list[Identifier] = Field(min_length=1, max_length=500)


class AnnouncementIn(Body):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARACTERS)
    clinician_id: Identifier | None = None
    announcement_id: Identifier | None = None


class ExportIn(Body):
    clinician_id: Identifier | None = None
    password: str | None = Field(default=None, min_length=8, max_length=128)


class EnablementIn(Body):
    enabled: bool


class VerifyIn(Body):
    date_of_birth: date


class SignInIn(Body):
    email: str = Field(min_length=3, max_length=254)


class StaffMe(BaseModel):
    staff_id: str
    practice_id: str
    display_name: str
    roles: list[str]
    can_view_others_conversations: bool
    can_export: bool


class TeamMember(BaseModel):
    """A colleague as the staff frontend shows them (to pick an assignee, to name a sender)."""

    staff_id: str
    display_name: str
    roles: list[str]
    messaging_enabled: bool


class CommandResult(BaseModel):
    """What conversations answered to a state-changing request, passed through."""

    ok: bool = True
    result: dict[str, object] | list[object] | None = None


class LinkAnswer(BaseModel):
    status: str = Field(description="needs_verification, verified, expired, revoked or locked.")
    practice_name: str
    attempts_left: int
    sign_in_url: str | None = Field(description="The practice's sign-in page.")


class SessionAnswer(BaseModel):
    csrf_token: str = Field(description="Send back as X-CSRF-Token on state-changing calls.")
    conversation_id: str | None = Field(description="Set when the session sees one conversation.")
    idle_timeout_minutes: float
    absolute_timeout_minutes: float


class SignInAnswer(BaseModel):
    detail: str


class ClientIdentity(BaseModel):
    principal: ParticipantRef
    display_name: str
    on_behalf_of: str | None = Field(
        description="For a contact: the client whose conversations they share."
    )


class ClientSessionView(BaseModel):
    principal: ParticipantRef
    practice_name: str
    practice_slug: str | None
    conversation_id: str | None
    identities: list[ClientIdentity] = Field(
        description="Every record this email address may act as, the signed-in one first "
        "(a partner who is a client too, a parent of two clients); switch with "
        "POST /api/client/session/identity."
    )


class IdentitySwitchIn(BaseModel):
    principal: ParticipantRef


class ClientConversation(BaseModel):
    conversation_id: str
    subject: str
    unread: bool
    archived: bool
    last_activity_at: datetime


ClientRecipientRole = Literal["primary_clinician", "practice_manager", "biller", "scheduler"]


class ClientRecipient(BaseModel):
    """A team member a client may start a conversation with (never their address)."""

    staff_id: str
    display_name: str
    role: ClientRecipientRole = Field(
        description="Why the client may write to them: their primary clinician first, else "
        "their role."
    )


class ClientThread(BaseModel):
    """A thread as a client sees it: messages only, never notes, tasks or request details."""

    conversation: ClientConversation
    messages: list[MessageView]
    away_message: str | None = None
    banner: str | None = None
    edit_note: str | None = None
    max_message_length: int


class Banners(BaseModel):
    away_message: str | None
    banner: str | None
    edit_note: str | None
    max_message_length: int
