"""Conversations service: commands and queries it answers (request/reply) and events it emits.

Every request carries the `actor` on whose behalf the gateway asks; conversations applies the
messaging rules to that actor and answers with a `Reply` holding a result or a typed `Problem`.
Events carry ids only, never bodies, notes or request details.
"""

from __future__ import annotations

from datetime import date, time
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, model_validator

from sotto_contracts.base import AwareDatetime, Command, Contract, Event, Identifier, Query
from sotto_contracts.common import ClientEmailWorkflow, ParticipantRef

MAX_MESSAGE_LENGTH = 5000
MAX_AWAY_MESSAGE_LENGTH = 600

MessageBody = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_LENGTH, strip_whitespace=True)
]


# ----------------------------------------------------------------------------- values


class ConversationKind(StrEnum):
    CLIENT = "client"
    STAFF = "staff"
    APPOINTMENT_REQUEST = "appointment_request"
    INQUIRY = "inquiry"


class InboxView(StrEnum):
    MINE = "mine"
    OTHERS = "others"
    ALL = "all"


class AnnouncementState(StrEnum):
    SENDING = "sending"
    SENT = "sent"


class OfficeHours(Contract):
    weekday: int = Field(ge=0, le=6, description="0 = Monday.")
    opens: time
    closes: time

    @model_validator(mode="after")
    def _opens_before_closing(self) -> OfficeHours:
        if self.opens >= self.closes:
            raise ValueError("office hours: opens must be before closes (the same day)")
        return self


class PracticeSettings(Contract):
    """Practice-wide messaging settings; owned by conversations, read by the gateway."""

    secure_messaging_enabled: bool = True
    auto_enable_new_clients: bool = True
    route_client_emails_through_portal: bool = True
    client_notification_delay_seconds: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    staff_notification_delay_seconds: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    staff_notifications_enabled: bool = True
    link_expiry_hours: int = Field(default=24, ge=1, le=24 * 14)
    away_message_enabled: bool = False
    away_message: str = Field(default="", max_length=MAX_AWAY_MESSAGE_LENGTH)
    banner: str = Field(default="", max_length=1000)
    edit_note: str = Field(default="", max_length=1000)
    office_hours: list[OfficeHours] = Field(default_factory=list)
    after_hours_reply_enabled: bool = False
    after_hours_reply: str = Field(
        default=(
            "Our office is closed. If this is an emergency, call 911. For a mental health "
            "crisis, call or text 988 (Suicide & Crisis Lifeline)."
        ),
        max_length=MAX_AWAY_MESSAGE_LENGTH,
    )
    time_zone: str = Field(default="UTC", max_length=64)
    max_message_length: int = Field(default=MAX_MESSAGE_LENGTH, ge=1, le=MAX_MESSAGE_LENGTH)
    client_rate_limit_count: int = Field(default=20, ge=1, le=10_000)
    client_rate_limit_period_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)


class PracticeSettingsPatch(Contract):
    """Only the fields given are changed."""

    secure_messaging_enabled: bool | None = None
    auto_enable_new_clients: bool | None = None
    route_client_emails_through_portal: bool | None = None
    client_notification_delay_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    staff_notification_delay_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    staff_notifications_enabled: bool | None = None
    link_expiry_hours: int | None = Field(default=None, ge=1, le=24 * 14)
    away_message_enabled: bool | None = None
    away_message: str | None = Field(default=None, max_length=MAX_AWAY_MESSAGE_LENGTH)
    banner: str | None = Field(default=None, max_length=1000)
    edit_note: str | None = Field(default=None, max_length=1000)
    office_hours: list[OfficeHours] | None = None
    after_hours_reply_enabled: bool | None = None
    after_hours_reply: str | None = Field(default=None, max_length=MAX_AWAY_MESSAGE_LENGTH)
    time_zone: str | None = Field(default=None, max_length=64)
    max_message_length: int | None = Field(default=None, ge=1, le=MAX_MESSAGE_LENGTH)
    client_rate_limit_count: int | None = Field(default=None, ge=1, le=10_000)
    client_rate_limit_period_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class MessageView(Contract):
    message_id: Identifier = Field(description="Id of the posted message.")
    conversation_id: Identifier
    sender: ParticipantRef | None = Field(description="None for automatic replies.")
    body: str = Field(description="Empty when removed and shown to a client.")
    sent_at: AwareDatetime
    removed: bool = False
    automatic: bool = False
    read_by: list[ParticipantRef] = Field(default_factory=list)


class NoteView(Contract):
    note_id: Identifier
    author_id: Identifier
    body: str
    created_at: AwareDatetime


class TaskView(Contract):
    task_id: Identifier
    conversation_id: Identifier
    title: str
    assignee_id: Identifier | None
    due: date | None
    done: bool
    created_at: AwareDatetime


class ConversationSummary(Contract):
    conversation_id: Identifier
    kind: ConversationKind
    subject: str
    client_id: Identifier | None
    client_name: str | None = None
    participants: list[ParticipantRef]
    assignee_id: Identifier | None
    archived: bool
    unread: bool = Field(description="Unread for the asking actor.")
    last_activity_at: AwareDatetime


class ThreadView(Contract):
    conversation: ConversationSummary
    messages: list[MessageView]
    notes: list[NoteView] = Field(default_factory=list, description="Always empty for clients.")
    tasks: list[TaskView] = Field(default_factory=list, description="Always empty for clients.")
    request_details: str | None = Field(
        default=None, description="Appointment request details (staff only)."
    )
    away_message: str | None = None
    banner: str | None = None
    edit_note: str | None = None
    max_message_length: int = MAX_MESSAGE_LENGTH


class InboxPage(Contract):
    items: list[ConversationSummary]
    total: int
    page: int
    page_size: int


# ----------------------------------------------------------------------------- requests


class ConversationRequest(Command):
    """A state-changing request made on behalf of `actor`."""

    actor: ParticipantRef


class OpenConversation(ConversationRequest):
    """Reply result: ThreadView (the same view again if the id exists and is visible)."""

    ROUTING_KEY: ClassVar[str] = "conversations.open_conversation.v1"

    conversation_id: Identifier = Field(description="Chosen by the caller; idempotency key.")
    subject: str = Field(min_length=1, max_length=200)
    client_id: Identifier | None = Field(
        default=None, description="The client this conversation is about; None for staff-only."
    )
    participants: list[ParticipantRef] = Field(
        default_factory=list, description="Other participants besides actor and client."
    )
    first_message: MessageBody | None = None


class PostMessage(ConversationRequest):
    """Reply result: MessageView."""

    ROUTING_KEY: ClassVar[str] = "conversations.post_message.v1"

    conversation_id: Identifier
    posted_message_id: Identifier = Field(description="Sender's id; reposting it is a no-op.")
    body: MessageBody


class MarkRead(ConversationRequest):
    """Reply result: ConversationSummary."""

    ROUTING_KEY: ClassVar[str] = "conversations.mark_read.v1"

    conversation_id: Identifier


class MarkUnread(ConversationRequest):
    """Reply result: ConversationSummary."""

    ROUTING_KEY: ClassVar[str] = "conversations.mark_unread.v1"

    conversation_id: Identifier


class RemoveMessage(ConversationRequest):
    """Reply result: MessageView (removed=True, body empty)."""

    ROUTING_KEY: ClassVar[str] = "conversations.remove_message.v1"

    conversation_id: Identifier
    posted_message_id: Identifier


class AssignConversation(ConversationRequest):
    """Reply result: ConversationSummary."""

    ROUTING_KEY: ClassVar[str] = "conversations.assign_conversation.v1"

    conversation_id: Identifier
    assignee_id: Identifier


class SetArchived(ConversationRequest):
    """Reply result: ConversationSummary."""

    ROUTING_KEY: ClassVar[str] = "conversations.set_archived.v1"

    conversation_id: Identifier
    archived: bool


class AddNote(ConversationRequest):
    """Reply result: NoteView."""

    ROUTING_KEY: ClassVar[str] = "conversations.add_note.v1"

    conversation_id: Identifier
    note_id: Identifier
    body: MessageBody


class CreateTask(ConversationRequest):
    """Reply result: TaskView."""

    ROUTING_KEY: ClassVar[str] = "conversations.create_task.v1"

    conversation_id: Identifier
    task_id: Identifier
    title: str = Field(min_length=1, max_length=200)
    assignee_id: Identifier | None = None
    due: date | None = None


class UpdateTask(ConversationRequest):
    """Reply result: TaskView."""

    ROUTING_KEY: ClassVar[str] = "conversations.update_task.v1"

    task_id: Identifier
    done: bool | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    assignee_id: Identifier | None = None
    due: date | None = None


class UpdateSettings(ConversationRequest):
    """Reply result: PracticeSettings. Owners and practice managers only."""

    ROUTING_KEY: ClassVar[str] = "conversations.update_settings.v1"

    changes: PracticeSettingsPatch


class SetMessagingEnabled(ConversationRequest):
    """Reply result: None. Owners and practice managers only."""

    ROUTING_KEY: ClassVar[str] = "conversations.set_messaging_enabled.v1"

    subject: ParticipantRef = Field(description="The client or team member to switch.")
    enabled: bool


class SendAnnouncement(ConversationRequest):
    """Reply result: AnnouncementResult, as soon as the announcement is accepted (state
    `sending`): its recipients are fixed then and their conversations are created in the
    background. Repeating the request with the same announcement id answers the status of the
    one already accepted."""

    ROUTING_KEY: ClassVar[str] = "conversations.send_announcement.v1"

    announcement_id: Identifier
    subject: str = Field(min_length=1, max_length=200)
    body: MessageBody
    clinician_id: Identifier | None = Field(
        default=None, description="Only this clinician's active clients; None for all."
    )


# ----------------------------------------------------------------------------- queries


class ConversationQuery(Query):
    actor: ParticipantRef


class GetInbox(ConversationQuery):
    """Reply result: InboxPage (staff only)."""

    ROUTING_KEY: ClassVar[str] = "conversations.get_inbox.v1"

    view: InboxView = InboxView.MINE
    assignee_id: Identifier | None = Field(default=None, description="For view=others.")
    unread_only: bool = False
    archived: bool = False
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    search: str | None = Field(default=None, max_length=200)
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=25, ge=1, le=200)


class GetThread(ConversationQuery):
    """Reply result: ThreadView."""

    ROUTING_KEY: ClassVar[str] = "conversations.get_thread.v1"

    conversation_id: Identifier


class ListClientConversations(ConversationQuery):
    """Reply result: list[ConversationSummary] (clients and contacts only)."""

    ROUTING_KEY: ClassVar[str] = "conversations.list_client_conversations.v1"


class CopyMessages(ConversationQuery):
    """Reply result: TextResult."""

    ROUTING_KEY: ClassVar[str] = "conversations.copy_messages.v1"

    conversation_id: Identifier
    posted_message_ids: list[Identifier] = Field(min_length=1, max_length=500)


class GetTranscript(ConversationQuery):
    """Reply result: TextResult (staff view: removed and internal entries marked)."""

    ROUTING_KEY: ClassVar[str] = "conversations.get_transcript.v1"

    client_id: Identifier


class ExportPractice(ConversationQuery):
    """Reply result: ExportResult (zip). The gateway password-protects it itself, so no
    password travels on the broker."""

    ROUTING_KEY: ClassVar[str] = "conversations.export_practice.v1"

    clinician_id: Identifier | None = None
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=128,
        json_schema_extra={"deprecated": True},
        description="Deprecated: never sent by current gateways. Still honoured (AES-encrypted "
        "zip) for a request from an older one, which expects it.",
    )


class GetAnnouncement(ConversationQuery):
    """Reply result: AnnouncementResult (owners and managers, or the team member who sent it)."""

    ROUTING_KEY: ClassVar[str] = "conversations.get_announcement.v1"

    announcement_id: Identifier


class GetSettings(Query):
    """Reply result: PracticeSettings."""

    ROUTING_KEY: ClassVar[str] = "conversations.get_settings.v1"


class TextResult(Contract):
    text: str


class ExportResult(Contract):
    filename: str
    content_type: str
    archive_base64: str


class AnnouncementResult(Contract):
    announcement_id: Identifier
    conversations: int = Field(description="Client conversations created so far.")
    clients: int = Field(
        description="Active, enabled clients the announcement is for (fixed when accepted)."
    )
    # the default: a reply without it comes from the earlier version, which answered when done
    state: AnnouncementState = Field(
        default=AnnouncementState.SENT,
        description="sending: accepted, conversations still being created; sent: finished.",
    )


# ----------------------------------------------------------------------------- events


class ConversationEvent(Event):
    conversation_id: Identifier
    actor: ParticipantRef | None = None


class ConversationOpened(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.conversation_opened.v1"

    kind: ConversationKind
    client_id: Identifier | None
    participants: list[ParticipantRef]


class MessagePosted(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.message_posted.v1"

    posted_message_id: Identifier
    recipients: list[ParticipantRef]
    automatic: bool = False


class MessageRead(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.message_read.v1"

    reader: ParticipantRef


class MessageRemoved(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.message_removed.v1"

    posted_message_id: Identifier


class ConversationAssigned(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.conversation_assigned.v1"

    assignee_id: Identifier
    previous_assignee_id: Identifier | None


class ConversationArchived(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.conversation_archived.v1"


class ConversationUnarchived(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.conversation_unarchived.v1"


class ConversationMarkedUnread(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.conversation_marked_unread.v1"


class NoteAdded(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.note_added.v1"

    note_id: Identifier


class TaskCreated(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.task_created.v1"

    task_id: Identifier
    assignee_id: Identifier | None


class UnreadReminderDue(ConversationEvent):
    """A recipient left a message unread past the practice's delay: notify them once."""

    ROUTING_KEY: ClassVar[str] = "conversations.unread_reminder_due.v1"

    recipient: ParticipantRef
    posted_message_id: Identifier


class TaskUpdated(ConversationEvent):
    ROUTING_KEY: ClassVar[str] = "conversations.task_updated.v1"

    task_id: Identifier
    assignee_id: Identifier | None
    done: bool


class SettingsChanged(Event):
    ROUTING_KEY: ClassVar[str] = "conversations.settings_changed.v1"

    actor: ParticipantRef | None = None
    changed_fields: list[str]


class MessagingEnablementChanged(Event):
    ROUTING_KEY: ClassVar[str] = "conversations.messaging_enablement_changed.v1"

    actor: ParticipantRef | None = None
    subject: ParticipantRef
    enabled: bool


class ClientEmailDue(Event):
    """Routing is off for a client-email workflow: the gateway sends the minimal email."""

    ROUTING_KEY: ClassVar[str] = "conversations.client_email_due.v1"

    client_id: Identifier
    recipient: ParticipantRef
    workflow: ClientEmailWorkflow
    reference_id: Identifier
    conversation_id: Identifier | None = Field(
        default=None, description="The conversation holding the history record."
    )
