"""Messaging rules, thread state and views. Pure: no I/O, no clock except what callers pass in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import emoji

from sotto_contracts.common import (
    CLIENT_REACHABLE_ROLES,
    ContactRelation,
    ParticipantKind,
    ParticipantRef,
    StaffRole,
)
from sotto_contracts.conversations import (
    AnnouncementResult,
    AnnouncementState,
    ConversationKind,
    ConversationSummary,
    MessageView,
    NoteView,
    PracticeSettings,
    TaskView,
    ThreadView,
)

REMOVED_TEXT = "message removed"
ANY_CLIENT_ROLES = frozenset(
    {StaffRole.OWNER, StaffRole.PRACTICE_MANAGER, StaffRole.BILLER, StaffRole.SCHEDULER}
)
ADMIN_ROLES = frozenset({StaffRole.OWNER, StaffRole.PRACTICE_MANAGER})
SYSTEM_AUTHOR = "practice"
# Prefixes of the conversation ids the service derives for threads of its own (a client's
# notices, appointment requests, inquiries, announcements) from other ids: `<prefix>-<32 hex>`.
SYSTEM_CONVERSATION_PREFIXES = ("notices", "appointment-request", "inquiry", "announcement")
_SYSTEM_CONVERSATION_ID = re.compile(
    rf"^(?:{'|'.join(map(re.escape, SYSTEM_CONVERSATION_PREFIXES))})-[0-9a-f]{{32}}$"
)
_NOTICES_CONVERSATION_ID = re.compile(r"^notices-[0-9a-f]{32}$")


class RefusalError(Exception):
    """A rule says no; carries the typed problem the gateway shows."""

    def __init__(self, code: str, detail: str, status: int = 409) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status


def not_found(what: str = "conversation") -> RefusalError:
    return RefusalError("not_found", f"{what} not found", 404)


def key_of(ref: ParticipantRef) -> str:
    return f"{ref.kind.value}:{ref.id}"


@lru_cache(maxsize=65_536)  # refs are frozen; a 50-message GET built ~150 of them
def ref_of(key: str) -> ParticipantRef:
    kind, _, identifier = key.partition(":")
    return ParticipantRef(kind=ParticipantKind(kind), id=identifier)


def staff_ref(staff_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.STAFF, id=staff_id)


def client_ref(client_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.CLIENT, id=client_id)


# ----------------------------------------------------------------------------- projection


@dataclass(frozen=True)
class StaffMember:
    staff_id: str
    display_name: str
    roles: frozenset[StaffRole]
    client_ids: frozenset[str] = frozenset()
    can_view_others: bool = False
    can_export: bool = False
    messaging_enabled: bool = True
    email_notifications: bool = True
    active: bool = True

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    @property
    def may_view_others(self) -> bool:
        return self.can_view_others or self.is_admin

    @property
    def messages_any_client(self) -> bool:
        return bool(self.roles & ANY_CLIENT_ROLES)

    def reaches_client(self, client: ClientRecord) -> bool:
        """Whether this team member may message the client."""
        return self.messages_any_client or self.has_access_to(client)

    def has_access_to(self, client: ClientRecord) -> bool:
        return self.staff_id in client.clinician_ids or client.client_id in self.client_ids

    @property
    def reachable_by_clients(self) -> bool:
        return not self.roles.isdisjoint(CLIENT_REACHABLE_ROLES)


@dataclass(frozen=True)
class ContactRecord:
    contact_id: str
    relation: ContactRelation
    display_name: str
    messaging_enabled: bool = True
    can_message: bool = True


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    display_name: str
    primary_clinician_id: str | None = None
    clinician_id_list: tuple[str, ...] = ()
    messaging_enabled: bool = True
    active: bool = True
    contacts: tuple[ContactRecord, ...] = ()

    @property
    def clinician_ids(self) -> frozenset[str]:
        ids = set(self.clinician_id_list)
        if self.primary_clinician_id:
            ids.add(self.primary_clinician_id)
        return frozenset(ids)

    def contact(self, contact_id: str) -> ContactRecord | None:
        return next((c for c in self.contacts if c.contact_id == contact_id), None)

    def reads_portal(self, person: ParticipantRef) -> bool:
        """Whether the client, or one of their contacts, may read secure messages."""
        if not self.active or not self.messaging_enabled:
            return False
        if person.kind == ParticipantKind.CLIENT:
            return person.id == self.client_id
        contact = self.contact(person.id)
        return contact is not None and contact.messaging_enabled and contact.can_message


# ----------------------------------------------------------------------------- announcements


@dataclass
class Announcement:
    """An accepted announcement. Its recipients are fixed when it is accepted; their
    conversations are created batch by batch, in order: the first `processed` are done."""

    practice_id: str
    announcement_id: str
    sender_id: str
    subject: str
    body: str
    clinician_id: str | None
    recipient_ids: tuple[str, ...]
    clients: int
    accepted_at: datetime
    processed: int = 0
    conversations: int = 0
    state: AnnouncementState = AnnouncementState.SENDING
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state is AnnouncementState.SENT

    def next_batch(self, size: int) -> tuple[str, ...]:
        return self.recipient_ids[self.processed : self.processed + size]

    def record_batch(self, recipients: int, conversations: int) -> None:
        self.processed += recipients
        self.conversations += conversations

    def finish(self, now: datetime) -> None:
        self.state = AnnouncementState.SENT
        self.finished_at = now

    def result(self) -> AnnouncementResult:
        return AnnouncementResult(
            announcement_id=self.announcement_id,
            conversations=self.conversations,
            clients=self.clients,
            state=self.state,
        )


def may_see_announcement(staff: StaffMember, announcement: Announcement) -> bool:
    return staff.is_admin or staff.staff_id == announcement.sender_id


# ----------------------------------------------------------------------------- thread state


@dataclass
class StoredMessage:
    posted_message_id: str
    sender: ParticipantRef | None
    body: str
    sent_at: datetime
    seq: int
    removed: bool = False
    automatic: bool = False
    recipients: tuple[str, ...] = ()

    def addressed_to(self, key: str) -> bool:
        """Messages stored before recipients were recorded went to everyone."""
        return not self.recipients or key in self.recipients


@dataclass
class StoredNote:
    note_id: str
    author_id: str
    body: str
    created_at: datetime


@dataclass
class StoredTask:
    task_id: str
    title: str
    assignee_id: str | None
    due: object
    done: bool
    created_at: datetime


@dataclass
class Thread:
    practice_id: str
    conversation_id: str
    kind: ConversationKind
    subject: str
    client_id: str | None
    client_name: str | None
    participant_keys: list[str]
    assignee_id: str | None
    archived: bool
    created_at: datetime
    last_activity_at: datetime
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    notes: dict[str, StoredNote] = field(default_factory=dict)
    tasks: dict[str, StoredTask] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    unread_by: list[str] = field(default_factory=list)
    request_details: str | None = None
    version: int = 0
    stored_fields: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_notices(self) -> bool:
        """A thread of the practice's notices to one person (before, to a client and their
        contacts together): what the people on the client's side write there goes to the team
        alone, and the team's answers to the person whose notices they are."""
        return self.kind == ConversationKind.CLIENT and bool(
            _NOTICES_CONVERSATION_ID.match(self.conversation_id)
        )

    @property
    def notices_owner(self) -> str | None:
        return next((key for key in self.participant_keys if not key.startswith("staff:")), None)

    def shown_to_client_side(self, message: StoredMessage, key: str) -> bool:
        """A practice-generated message (a notice, an automatic reply) addressed to some
        participants is theirs alone: a partner does not see the client's own reminders. In a
        notices thread, what someone on the client's side writes is theirs alone too."""
        if message.sender is None:
            return message.addressed_to(key)
        if not self.is_notices:
            return True
        if message.sender.kind != ParticipantKind.STAFF:
            return key_of(message.sender) == key
        return message.addressed_to(key)

    def client_side_keys_shown_to(self, viewer_key: str) -> list[str]:
        """The participants a person on the client's side sees taking part."""
        if not self.is_notices:
            return list(self.participant_keys)
        return [k for k in self.participant_keys if k.startswith("staff:") or k == viewer_key]

    @property
    def last_seq(self) -> int:
        return max((m.seq for m in self.messages.values()), default=0)

    @property
    def audience(self) -> list[str]:
        """Everyone who should see new messages: participants and the assignee."""
        keys = list(self.participant_keys)
        if self.assignee_id and f"staff:{self.assignee_id}" not in keys:
            keys.append(f"staff:{self.assignee_id}")
        return keys

    @property
    def inbox_owner_ids(self) -> list[str]:
        """Staff whose "mine" list holds this thread: its assignee and the team members taking
        part (the ones its new messages notify)."""
        return [ref_of(key).id for key in self.audience if key.startswith("staff:")]

    def ordered_messages(self) -> list[StoredMessage]:
        return sorted(self.messages.values(), key=lambda m: m.seq)

    def has_incoming_for(self, key: str) -> bool:
        return self.newest_incoming_for(key) is not None

    def _incoming_for(self, key: str) -> list[StoredMessage]:
        """Messages someone else sent `key`; the practice's own notices and automatic replies
        come in for clients only."""
        if key.startswith("staff:"):
            return [
                message
                for message in self.messages.values()
                if message.sender is not None and key_of(message.sender) != key
            ]
        return [
            message
            for message in self.messages.values()
            if (message.sender is None or key_of(message.sender) != key)
            and self.shown_to_client_side(message, key)
        ]

    def newest_incoming_for(self, key: str) -> StoredMessage | None:
        return max(self._incoming_for(key), key=lambda message: message.seq, default=None)

    def withdraw(self, removed: StoredMessage) -> dict[str, StoredMessage | None]:
        """Who the removed message had left unread, each with the newest message still unread
        for them; the thread is read for those left with none."""
        left: dict[str, StoredMessage | None] = {}
        for key in removed.recipients:
            read_up_to = self.reads.get(key, 0)
            if key not in self.unread_by or removed.seq <= read_up_to:
                continue
            unread = [
                message
                for message in self._incoming_for(key)
                if not message.removed
                and message.seq > read_up_to
                and (not message.recipients or key in message.recipients)
            ]
            left[key] = max(unread, key=lambda message: message.seq, default=None)
            if left[key] is None:
                self.unread_by = [k for k in self.unread_by if k != key]
        return left

    def hand_over(self, assignee_id: str) -> list[str]:
        """Make `assignee_id` the assignee. The thread is unread for them when its previous
        assignee had not read it or, if it had none, when it holds a request or a message for
        them that they have not read. The previous assignee leaves a client thread (it leaves
        their list); returns them: their reminders of it go. A staff conversation keeps everyone
        in it: it is visible only to those taking part."""
        key = f"staff:{assignee_id}"
        previous = self.assignee_id
        gone = []
        if previous and self.kind != ConversationKind.STAFF:
            previous_key = f"staff:{previous}"
            unread = previous_key in self.unread_by
            gone.append(previous_key)
            self.participant_keys = [k for k in self.participant_keys if k != previous_key]
            self.unread_by = [k for k in self.unread_by if k != previous_key]
        else:
            newest = self.newest_incoming_for(key)
            unread = (
                newest.seq > self.reads.get(key, 0)
                if newest is not None
                else self.request_details is not None and key not in self.reads
            )
        self.assignee_id = assignee_id
        if unread and key not in self.unread_by:
            self.unread_by.append(key)
        return gone

    def answered_automatically(self, key: str, text: str) -> bool:
        """Whether `key` was sent this automatic reply since a team member last wrote here."""
        last_staff = max(
            (
                m.seq
                for m in self.messages.values()
                if m.sender is not None and m.sender.kind == ParticipantKind.STAFF
            ),
            default=0,
        )
        return any(
            m.automatic and m.seq > last_staff and key in m.recipients and m.body == text
            for m in self.messages.values()
        )

    def read_by(self, message: StoredMessage) -> list[ParticipantRef]:
        return [ref_of(key) for key, seq in sorted(self.reads.items()) if seq >= message.seq]


def render_body(text: str) -> str:
    return emoji.emojize(text, language="alias")


def check_length(body: str, settings: PracticeSettings) -> None:
    if len(body) > settings.max_message_length:
        raise RefusalError(
            "message_too_long",
            f"a message holds at most {settings.max_message_length} characters",
            413,
        )


def check_time_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RefusalError(
            "unknown_time_zone",
            f"{name!r} is not a time zone name (for example America/Chicago)",
            422,
        ) from None


def is_after_hours(settings: PracticeSettings, now: datetime) -> bool:
    if not settings.office_hours:
        return False
    try:
        zone = ZoneInfo(settings.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    return not any(
        hours.weekday == local.weekday() and hours.opens <= local.time() < hours.closes
        for hours in settings.office_hours
    )


def automatic_reply(settings: PracticeSettings, now: datetime) -> str | None:
    """What the practice answers a client automatically, if anything."""
    if settings.away_message_enabled and settings.away_message:
        return settings.away_message
    if settings.after_hours_reply_enabled and is_after_hours(settings, now):
        return settings.after_hours_reply
    return None


def rate_window_start(settings: PracticeSettings, now: datetime) -> datetime:
    return now - timedelta(seconds=settings.client_rate_limit_period_seconds)


def check_send_allowed(
    sends: Sequence[tuple[datetime, str]], token: str, settings: PracticeSettings, now: datetime
) -> None:
    """`sends`: a client's recorded sends (time, token) in the order they were recorded, their
    own (`token`) among them. It may go ahead when fewer than the limit were recorded before it
    within the period: of concurrent sends, the first recorded win."""
    window_start = rate_window_start(settings, now)
    before = 0
    for sent_at, sent_token in sends:
        if sent_token == token:
            if before < settings.client_rate_limit_count:
                return
            break
        if sent_at > window_start:
            before += 1
    raise RefusalError(
        "rate_limited",
        f"at most {settings.client_rate_limit_count} messages per "
        f"{settings.client_rate_limit_period_seconds} seconds",
        429,
    )


# ----------------------------------------------------------------------------- rules


def check_chosen_conversation_id(conversation_id: str) -> None:
    """Callers choose the ids of the conversations they open, but not ids of the shape the
    service derives for its own threads: anyone knowing a client id could compute one."""
    if _SYSTEM_CONVERSATION_ID.match(conversation_id):
        raise RefusalError(
            "reserved_conversation_id",
            "conversation ids of the form "
            f"<{'|'.join(SYSTEM_CONVERSATION_PREFIXES)}>-<32 hex digits> are the practice's own",
            422,
        )


def require_practice_enabled(settings: PracticeSettings) -> None:
    if not settings.secure_messaging_enabled:
        raise RefusalError(
            "practice_messaging_disabled", "secure messaging is off for this practice", 403
        )


def require_staff_enabled(staff: StaffMember) -> None:
    if not staff.active or not staff.messaging_enabled:
        raise RefusalError(
            "staff_messaging_disabled",
            f"secure messaging is not enabled for team member {staff.staff_id}",
            403,
        )


def require_client_enabled(client: ClientRecord) -> None:
    if not client.active or not client.messaging_enabled:
        raise RefusalError(
            "client_messaging_disabled", "secure messaging is not enabled for this client", 403
        )


def require_contact_enabled(contact: ContactRecord) -> None:
    if not contact.messaging_enabled or not contact.can_message:
        raise RefusalError(
            "contact_messaging_disabled", "this contact may not use secure messaging", 403
        )


def check_staff_opens_with_client(staff: StaffMember, client: ClientRecord) -> None:
    require_staff_enabled(staff)
    require_client_enabled(client)
    if not staff.reaches_client(client):
        if StaffRole.SUPERVISOR in staff.roles:
            raise RefusalError(
                "supervisor_without_access",
                "supervisors may message only clients they have access to",
                403,
            )
        raise RefusalError(
            "no_client_access", "you may message only clients you have access to", 403
        )


def check_client_opens_with(client: ClientRecord, staff: StaffMember) -> None:
    """A client starts only with their primary clinician, or managers, billers, schedulers."""
    if staff.staff_id == client.primary_clinician_id or staff.reachable_by_clients:
        require_staff_enabled(staff)
        return
    raise RefusalError(
        "client_may_not_start_with_staff",
        "clients may start conversations only with their primary clinician, "
        "practice managers, billers and schedulers",
        403,
    )


def staff_may_view(staff: StaffMember, thread: Thread, client: ClientRecord | None) -> bool:
    key = f"staff:{staff.staff_id}"
    involved = key in thread.participant_keys or thread.assignee_id == staff.staff_id
    if thread.kind == ConversationKind.STAFF:
        return involved
    if client is not None and not staff.reaches_client(client):
        # never on, or taken off, the client's care: the permission to see others'
        # conversations does not reach past it, and their own threads go with the client
        return False
    if involved or staff.may_view_others:
        return True
    # Billers and schedulers may *message* any client, but others' threads stay private
    # unless they have access to that client.
    return client is not None and staff.has_access_to(client)


def staff_may_view_transcript(staff: StaffMember, client: ClientRecord) -> bool:
    """A client's whole history, notes included: for those who may see others' conversations
    and those on the client's care, never past the client's care (as `staff_may_view`)."""
    return staff.reaches_client(client) and (staff.may_view_others or staff.has_access_to(client))


def recipients_of(thread: Thread, sender_key: str | None) -> list[str]:
    audience = [key for key in thread.audience if key != sender_key]
    if not thread.is_notices:
        return audience
    if sender_key is None or sender_key.startswith("staff:"):
        return [k for k in audience if k.startswith("staff:") or k == thread.notices_owner]
    return [k for k in audience if k.startswith("staff:")]


# ----------------------------------------------------------------------------- views


def message_view(
    thread: Thread, message: StoredMessage, viewer: ParticipantRef | None = None
) -> MessageView:
    read_by = thread.read_by(message)
    if viewer is not None and viewer.kind != ParticipantKind.STAFF and thread.is_notices:
        read_by = [ref for ref in read_by if ref.kind == ParticipantKind.STAFF or ref == viewer]
    return MessageView(
        message_id=message.posted_message_id,
        conversation_id=thread.conversation_id,
        sender=message.sender,
        body="" if message.removed else message.body,
        sent_at=message.sent_at,
        removed=message.removed,
        automatic=message.automatic,
        read_by=read_by,
    )


def summary(thread: Thread, viewer_key: str) -> ConversationSummary:
    return ConversationSummary(
        conversation_id=thread.conversation_id,
        kind=thread.kind,
        subject=thread.subject,
        client_id=thread.client_id,
        client_name=thread.client_name,
        participants=[
            ref_of(key)
            for key in (
                thread.participant_keys
                if viewer_key.startswith("staff:")
                else thread.client_side_keys_shown_to(viewer_key)
            )
        ],
        assignee_id=thread.assignee_id,
        archived=thread.archived,
        unread=viewer_key in thread.unread_by,
        last_activity_at=thread.last_activity_at,
    )


def thread_view(thread: Thread, viewer: ParticipantRef, settings: PracticeSettings) -> ThreadView:
    if viewer.kind != ParticipantKind.STAFF:
        messages = [
            message_view(thread, m, viewer)
            for m in thread.ordered_messages()
            if thread.shown_to_client_side(m, key_of(viewer))
        ]
        return ThreadView(
            conversation=summary(thread, key_of(viewer)),
            messages=messages,
            away_message=settings.away_message if settings.away_message_enabled else None,
            banner=settings.banner or None,
            edit_note=settings.edit_note or None,
            max_message_length=settings.max_message_length,
        )
    return ThreadView(
        conversation=summary(thread, key_of(viewer)),
        messages=[message_view(thread, m) for m in thread.ordered_messages()],
        notes=[
            NoteView(note_id=n.note_id, author_id=n.author_id, body=n.body, created_at=n.created_at)
            for n in sorted(thread.notes.values(), key=lambda n: n.created_at)
        ],
        tasks=[
            task_view(thread, t) for t in sorted(thread.tasks.values(), key=lambda t: t.created_at)
        ],
        request_details=thread.request_details,
        max_message_length=settings.max_message_length,
    )


def task_view(thread: Thread, task: StoredTask) -> TaskView:
    return TaskView.model_validate(
        {
            "task_id": task.task_id,
            "conversation_id": thread.conversation_id,
            "title": task.title,
            "assignee_id": task.assignee_id,
            "due": task.due,
            "done": task.done,
            "created_at": task.created_at,
        }
    )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def name_of(ref: ParticipantRef | None, names: dict[str, str]) -> str:
    if ref is None:
        return "Practice (automatic)"
    return names.get(key_of(ref), f"{ref.kind.value} {ref.id}")


def copy_text(thread: Thread, message_ids: list[str], names: dict[str, str]) -> str:
    wanted = set(message_ids)
    lines = []
    for message in thread.ordered_messages():
        if message.posted_message_id not in wanted:
            continue
        body = f"[{REMOVED_TEXT}]" if message.removed else message.body
        lines.append(f"[{_stamp(message.sent_at)}] {name_of(message.sender, names)}: {body}")
    return "\n".join(lines)


def transcript_text(thread: Thread, names: dict[str, str]) -> str:
    """Staff transcript: removed messages kept and marked, internal notes marked internal."""
    header = [
        f"Conversation {thread.conversation_id}: {thread.subject}",
        f"Kind: {thread.kind.value}; client: {thread.client_name or thread.client_id or '-'}",
    ]
    if thread.request_details:
        header.append(f"Request details: {thread.request_details}")
    entries: list[tuple[datetime, str]] = []
    for message in thread.ordered_messages():
        marker = " [REMOVED]" if message.removed else ""
        automatic = " [AUTOMATIC]" if message.automatic else ""
        entries.append(
            (
                message.sent_at,
                f"[{_stamp(message.sent_at)}] {name_of(message.sender, names)}"
                f"{automatic}{marker}: {message.body}",
            )
        )
    for note in thread.notes.values():
        author = names.get(f"staff:{note.author_id}", note.author_id)
        entries.append(
            (note.created_at, f"[{_stamp(note.created_at)}] [INTERNAL NOTE] {author}: {note.body}")
        )
    entries.sort(key=lambda entry: entry[0])
    return "\n".join([*header, "", *(text for _, text in entries)]) + "\n"
