"""Use cases: one method per contract message; rules come from the domain, I/O from the store."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from sotto_contracts.base import Message, utc_now
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.conversations import (
    AddNote,
    AnnouncementResult,
    AssignConversation,
    ClientEmailDue,
    ConversationArchived,
    ConversationAssigned,
    ConversationKind,
    ConversationMarkedUnread,
    ConversationOpened,
    ConversationSummary,
    ConversationUnarchived,
    CopyMessages,
    CreateTask,
    ExportPractice,
    ExportResult,
    GetAnnouncement,
    GetInbox,
    GetSettings,
    GetThread,
    GetTranscript,
    InboxPage,
    InboxView,
    ListClientConversations,
    MarkRead,
    MarkUnread,
    MessagePosted,
    MessageRead,
    MessageRemoved,
    MessageView,
    MessagingEnablementChanged,
    NoteAdded,
    NoteView,
    OpenConversation,
    PostMessage,
    PracticeSettings,
    RemoveMessage,
    SendAnnouncement,
    SetArchived,
    SetMessagingEnabled,
    SettingsChanged,
    TaskCreated,
    TaskUpdated,
    TaskView,
    TextResult,
    ThreadView,
    UnreadReminderDue,
    UpdateSettings,
    UpdateTask,
)
from sotto_contracts.inbound import (
    AppointmentRequested,
    ClientEmailWorkflowEvent,
    ClientUpserted,
    InquiryReceived,
    InquiryResponse,
    PracticeUpserted,
    StaffUpserted,
)
from sotto_conversations import domain
from sotto_conversations.adapters.export import build_archive
from sotto_conversations.adapters.store import (
    ClientSend,
    ConversationStore,
    VersionConflictError,
    reminder_id,
    search_pattern,
    staff_from,
    thread_id,
)
from sotto_conversations.domain import (
    ClientRecord,
    ContactRecord,
    RefusalError,
    StaffMember,
    StoredMessage,
    StoredNote,
    StoredTask,
    Thread,
    key_of,
    not_found,
    ref_of,
)
from sotto_kit.locks import KeyedLocks
from sotto_kit.mongo import Document
from sotto_kit.parking import NotYetKnownError, PoisonMessageError

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
SAVE_ATTEMPTS = 8
SYSTEM_ID_ATTEMPTS = 4


@dataclass(frozen=True)
class ReminderSubject:
    """What a reminder needs of what it is about: a message, a request's details, a handover."""

    posted_message_id: str
    sent_at: datetime


def derived_id(prefix: str, *parts: str) -> str:
    """A bounded, stable id derived from other ids (idempotency across redeliveries)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{prefix}-{digest}"


def request_details_id(thread: Thread) -> str:
    """What an appointment request's reminders name in place of a message."""
    return derived_id("request-details", thread.conversation_id)


@overload
async def concurrently(first: Awaitable[A], second: Awaitable[B], /) -> tuple[A, B]: ...
@overload
async def concurrently(
    first: Awaitable[A], second: Awaitable[B], third: Awaitable[C], /
) -> tuple[A, B, C]: ...
async def concurrently(*reads: Awaitable[Any]) -> tuple[Any, ...]:
    """Independent reads at once (one round trip's wait, not one each); a failure is raised in
    argument order, as if they had run one after the other."""
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return tuple(outcomes)


@dataclass(frozen=True)
class Actor:
    ref: ParticipantRef
    staff: StaffMember | None = None
    client: ClientRecord | None = None
    contact: ContactRecord | None = None

    @property
    def key(self) -> str:
        return key_of(self.ref)

    def require_staff(self) -> StaffMember:
        if self.staff is None:
            raise RefusalError("staff_only", "only team members may do this", 403)
        return self.staff


@dataclass
class Change:
    """What a use case did to a thread: events to publish and reminders to schedule."""

    events: list[Message] = field(default_factory=list)
    reminders: list[Document] = field(default_factory=list)
    read_by: list[str] = field(default_factory=list)  # whose reminders go (read, or left)
    # (recipient, message id): their reminder goes if it names that (removed) message
    withdrawn: list[tuple[str, str]] = field(default_factory=list)


def _applied(stored: Document | None, occurred_at: datetime) -> bool:
    """Whether an inbound update was written: nothing newer was stored before it."""
    return stored is None or not stored.get("occurred_at") or stored["occurred_at"] <= occurred_at


class Conversations:
    def __init__(self, store: ConversationStore, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._raw_clock = clock
        self._thread_locks = KeyedLocks()

    def _clock(self) -> datetime:
        """Now, at the millisecond precision the database keeps, so replays compare equal."""
        now = self._raw_clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    # ------------------------------------------------------------------------- lookups

    async def _settings(self, practice_id: str) -> PracticeSettings:
        settings = await self._store.practice_settings(practice_id)
        if settings is None:
            raise not_found("practice")
        return settings

    async def _settings_and_actor(
        self, practice_id: str, ref: ParticipantRef
    ) -> tuple[PracticeSettings, Actor]:
        return await concurrently(self._settings(practice_id), self._actor(practice_id, ref))

    async def _actor(self, practice_id: str, ref: ParticipantRef) -> Actor:
        if ref.kind == ParticipantKind.STAFF:
            staff = await self._store.staff(practice_id, ref.id)
            if staff is None or not staff.active:
                raise not_found("team member")
            return Actor(ref, staff=staff)
        # switched off, for the practice or the client: no reading either
        if ref.kind == ParticipantKind.CLIENT:
            client, settings = await concurrently(
                self._store.client(practice_id, ref.id), self._settings(practice_id)
            )
            if client is None or not client.active:
                raise not_found("client")
            domain.require_practice_enabled(settings)
            domain.require_client_enabled(client)
            return Actor(ref, client=client)
        client, settings = await concurrently(
            self._store.client_of_contact(practice_id, ref.id), self._settings(practice_id)
        )
        contact = client.contact(ref.id) if client else None
        if client is None or contact is None or not client.active:
            raise not_found("contact")
        domain.require_practice_enabled(settings)
        domain.require_client_enabled(client)
        domain.require_contact_enabled(contact)
        return Actor(ref, client=client, contact=contact)

    async def _visible_thread(
        self, practice_id: str, conversation_id: str, actor: Actor, *, for_update: bool = False
    ) -> Thread:
        thread = await self._store.load_thread(practice_id, conversation_id, for_update=for_update)
        return await self._checked_visible(actor, thread)

    async def _checked_visible(self, actor: Actor, thread: Thread | None) -> Thread:
        if thread is None or not await self._may_view(actor, thread):
            raise not_found()
        return thread

    async def _may_view(self, actor: Actor, thread: Thread) -> bool:
        if actor.staff is None:
            return actor.key in thread.participant_keys
        client = (
            await self._store.client(thread.practice_id, thread.client_id)
            if thread.client_id
            else None
        )
        return domain.staff_may_view(actor.staff, thread, client)

    async def _may_take_over(self, assignee: domain.StaffMember, thread: Thread) -> bool:
        """An assignee must be able to see the thread once it is theirs: for a client thread,
        anyone who may message that client (billers and schedulers included); for an inquiry
        from someone not a client yet, anyone who may message any client."""
        if await self._may_view(Actor(domain.staff_ref(assignee.staff_id), staff=assignee), thread):
            return True
        if thread.kind == ConversationKind.STAFF or not thread.client_id:
            return False
        client = await self._store.client(thread.practice_id, thread.client_id)
        if client is None:
            return thread.kind == ConversationKind.INQUIRY and assignee.messages_any_client
        return assignee.reaches_client(client)

    async def _update(
        self,
        practice_id: str,
        conversation_id: str,
        actor: Actor | None,
        apply: Callable[[Thread], Awaitable[tuple[T, Change]]],
    ) -> T:
        """Load, change and save a thread, retrying when a concurrent write got there first.
        `actor` None: the service itself, on a practice event (no visibility check).

        Writes to one thread are serialised within this process as well, because FerretDB
        does not make the version check atomic.
        """
        async with self._thread_locks((practice_id, conversation_id)):
            return await self._update_unlocked(practice_id, conversation_id, actor, apply)

    async def _update_unlocked(
        self,
        practice_id: str,
        conversation_id: str,
        actor: Actor | None,
        apply: Callable[[Thread], Awaitable[tuple[T, Change]]],
    ) -> T:
        for _ in range(SAVE_ATTEMPTS):
            loaded = await self._store.load_thread(practice_id, conversation_id, for_update=True)
            if actor is not None:
                thread = await self._checked_visible(actor, loaded)
            elif loaded is None:
                raise not_found()
            else:
                thread = loaded
            result, change = await apply(thread)
            # Before the save: a crash after it must not leave the reminder of a read message
            # (a repeated request finds nothing to mark). A failed save's retry cancels again.
            for key in change.read_by:
                await self._store.cancel_reminders(practice_id, conversation_id, key)
            for key, posted_message_id in change.withdrawn:
                await self._store.cancel_reminders(
                    practice_id, conversation_id, key, naming=posted_message_id
                )
            try:
                if change.events:
                    await self._store.save_thread(thread, change.events)
            except VersionConflictError:
                continue
            await self._schedule(change.reminders)
            return result
        raise RefusalError("busy", "the conversation is changing too fast; try again", 503)

    async def _schedule(self, reminders: Sequence[Document]) -> None:
        """Emit the reminders due now at once; the scheduler emits the others when due."""
        now = self._clock()
        await self._store.emit_reminders(
            [r for r in reminders if r["due_at"] <= now], reminder_event
        )
        await self._store.schedule_reminders([r for r in reminders if r["due_at"] > now])

    # ------------------------------------------------------------------------- messages

    async def _reminder_for(
        self,
        thread: Thread,
        recipient_key: str,
        message: StoredMessage | ReminderSubject,
        settings: PracticeSettings,
    ) -> Document | None:
        if not settings.secure_messaging_enabled:
            return None
        recipient = ref_of(recipient_key)
        if recipient.kind == ParticipantKind.STAFF:
            staff = await self._store.staff(thread.practice_id, recipient.id)
            if (
                staff is None
                or not settings.staff_notifications_enabled
                or not staff.email_notifications
                or not staff.active
                or not await self._may_view(Actor(recipient, staff=staff), thread)
            ):
                return None
            delay = settings.staff_notification_delay_seconds
        else:
            delay = settings.client_notification_delay_seconds
        return {
            "_id": reminder_id(thread.practice_id, thread.conversation_id, recipient_key),
            "practice_id": thread.practice_id,
            "conversation_id": thread.conversation_id,
            "recipient": recipient_key,
            "posted_message_id": message.posted_message_id,
            "due_at": message.sent_at + timedelta(seconds=delay),
            "state": "pending",
        }

    async def _reminders(
        self,
        thread: Thread,
        recipient_keys: Sequence[str],
        subject: StoredMessage | ReminderSubject,
        settings: PracticeSettings,
    ) -> list[Document]:
        """The reminders of `subject` for those recipients who get one."""
        reminders = [
            await self._reminder_for(thread, key, subject, settings) for key in recipient_keys
        ]
        return [reminder for reminder in reminders if reminder is not None]

    async def _append(
        self,
        thread: Thread,
        sender: ParticipantRef | None,
        posted_message_id: str,
        body: str,
        settings: PracticeSettings,
        change: Change,
        *,
        recipients: Sequence[str] | None = None,
    ) -> StoredMessage:
        now = self._clock()
        sender_key = key_of(sender) if sender else None
        if sender_key and sender_key not in thread.participant_keys:
            thread.participant_keys.append(sender_key)
        targets = (
            list(recipients) if recipients is not None else domain.recipients_of(thread, sender_key)
        )
        message = StoredMessage(
            posted_message_id=posted_message_id,
            sender=sender,
            body=domain.render_body(body),
            sent_at=now,
            seq=thread.last_seq + 1,
            recipients=tuple(targets),
        )
        if sender_key and (
            sender_key in thread.unread_by or thread.reads.get(sender_key, 0) < thread.last_seq
        ):
            change.read_by.append(sender_key)
        thread.messages[posted_message_id] = message
        thread.last_activity_at = now
        if sender_key:
            thread.reads[sender_key] = message.seq
        thread.unread_by = [
            k for k in dict.fromkeys([*thread.unread_by, *targets]) if k != sender_key
        ]
        change.events.append(
            MessagePosted(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                actor=sender,
                posted_message_id=posted_message_id,
                recipients=[ref_of(k) for k in targets],
            )
        )
        change.reminders += await self._reminders(thread, targets, message, settings)
        if sender is not None and sender.kind != ParticipantKind.STAFF:
            thread.archived = False
            # A prospect cannot read the portal. Told once until the team writes again: each
            # further message would otherwise get the same reply.
            reply = domain.automatic_reply(settings, now)
            if (
                reply
                and thread.kind != ConversationKind.INQUIRY
                and not thread.answered_automatically(key_of(sender), reply)
            ):
                self._append_automatic(thread, sender, posted_message_id, reply, change)
        return message

    def _append_automatic(
        self, thread: Thread, to: ParticipantRef, in_reply_to: str, text: str, change: Change
    ) -> None:
        reply_id = derived_id("auto", in_reply_to)
        seq = thread.last_seq + 1
        thread.messages[reply_id] = StoredMessage(
            posted_message_id=reply_id,
            sender=None,
            body=text,
            sent_at=self._clock(),
            seq=seq,
            automatic=True,
            recipients=(key_of(to),),
        )
        thread.reads[key_of(to)] = seq
        change.events.append(
            MessagePosted(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                posted_message_id=reply_id,
                recipients=[to],
                automatic=True,
            )
        )

    async def _check_sender(self, actor: Actor, thread: Thread, settings: PracticeSettings) -> None:
        domain.require_practice_enabled(settings)
        if actor.staff is not None:
            domain.require_staff_enabled(actor.staff)
            if thread.kind != ConversationKind.STAFF and thread.client_id:
                client = await self._store.client(thread.practice_id, thread.client_id)
                if client is not None:
                    domain.require_client_enabled(client)
                elif thread.kind == ConversationKind.INQUIRY:
                    raise RefusalError(
                        "prospect_not_client",
                        "this person is not a client yet, so they cannot read secure messages: "
                        "answer with your practice system's inquiry response",
                        409,
                    )
            return

    async def _claim_send(
        self, actor: Actor, practice_id: str, settings: PracticeSettings
    ) -> ClientSend | None:
        """Record a client's (or contact's) send before making it, refused past the practice's
        rate limit. The record is one atomic append, so concurrent sends are counted in the
        order they were recorded; a refused one, and the client's sends from before the
        period, are forgotten. `_forget_send` forgets one that then is not made."""
        if actor.client is None:
            return None
        client_id = actor.client.client_id
        now, token = self._clock(), uuid.uuid4().hex
        sends = await self._store.record_client_send(practice_id, client_id, now, token)
        window_start = domain.rate_window_start(settings, now)
        forget = [send for send in sends if send.sent_at <= window_start]
        own = next((send for send in sends if send.token == token), None)
        try:
            domain.check_send_allowed(
                [(send.sent_at, send.token) for send in sends], token, settings, now
            )
        except RefusalError:
            forget += [own] if own else []
            raise
        finally:
            if forget:
                await self._store.forget_client_sends(practice_id, client_id, forget)
        return own

    async def _forget_send(
        self, actor: Actor, practice_id: str, claimed: ClientSend | None
    ) -> None:
        if claimed is not None and actor.client is not None:
            await self._store.forget_client_sends(practice_id, actor.client.client_id, [claimed])

    async def _pending_reminders(self, thread: Thread, message: StoredMessage) -> list[Document]:
        """On a repeated request: reminders for recipients who still have not read."""
        settings = await self._settings(thread.practice_id)
        unread = [key for key in message.recipients if key in thread.unread_by]
        return await self._reminders(thread, unread, message, settings)

    async def post_message(self, request: PostMessage) -> MessageView:
        settings, actor = await self._settings_and_actor(request.practice_id, request.actor)
        appended = False
        claimed: ClientSend | None = None

        async def apply(thread: Thread) -> tuple[MessageView, Change]:
            nonlocal appended, claimed
            existing = thread.messages.get(request.posted_message_id)
            appended = existing is None
            if existing is not None:  # a repeated request is not another message
                if existing.sender != actor.ref:
                    raise RefusalError(
                        "duplicate_message_id", "that message id is already used", 409
                    )
                change = Change(reminders=await self._pending_reminders(thread, existing))
                return domain.message_view(thread, existing), change
            await self._check_sender(actor, thread, settings)
            domain.check_length(request.body, settings)
            if claimed is None:  # not again when a concurrent write made the save retry
                claimed = await self._claim_send(actor, request.practice_id, settings)
            change = Change()
            if actor.client is not None:
                await self._rehome_if_orphaned(thread, change, actor.client)
            message = await self._append(
                thread, actor.ref, request.posted_message_id, request.body, settings, change
            )
            return domain.message_view(thread, message), change

        try:
            view = await self._update(request.practice_id, request.conversation_id, actor, apply)
        except BaseException:
            await self._forget_send(actor, request.practice_id, claimed)
            raise
        if not appended:
            await self._forget_send(actor, request.practice_id, claimed)
        return view

    async def _rehome_if_orphaned(
        self, thread: Thread, change: Change, client: ClientRecord | None = None
    ) -> bool:
        """A client thread nobody on the team can see any more (its assignee and the staff in
        it were taken off the client's care, or left) goes to the client's primary clinician,
        or else to a practice manager or owner, so that what the client writes reaches someone
        and is reminded of. `client`: the thread's client, when the caller has it."""
        if thread.kind == ConversationKind.STAFF or not thread.client_id:
            return False
        client = client or await self._store.client(thread.practice_id, thread.client_id)
        if client is None:
            return False

        def may_take(member: domain.StaffMember | None) -> bool:
            return (
                member is not None
                and member.active
                and domain.staff_may_view(member, thread, client)
            )

        for staff_id in thread.inbox_owner_ids:
            if may_take(await self._store.staff(thread.practice_id, staff_id)):
                return False
        taker = (
            await self._store.staff(thread.practice_id, client.primary_clinician_id)
            if client.primary_clinician_id
            else None
        )
        if not may_take(taker):
            leads = await self._store.practice_leads(thread.practice_id)
            taker = next((lead for lead in leads if may_take(lead)), None)
        if taker is None:
            return False
        self._hand_over(thread, taker.staff_id, None, change)
        return True

    async def _rehome_threads(self, practice_id: str, query: Document) -> None:
        """Someone left a client's care, or the practice: each thread matching `query` that
        nobody on the team can see any more goes to whoever takes over
        (`_rehome_if_orphaned`), with a reminder when it holds what they have not read."""
        settings = await self._settings(practice_id)
        threads = await self._store.find_threads({"practice_id": practice_id, **query})

        async def apply(thread: Thread) -> tuple[None, Change]:
            change = Change()
            if await self._rehome_if_orphaned(thread, change) and thread.assignee_id:
                change.reminders += await self._handover_reminders(
                    thread, thread.assignee_id, settings
                )
            return None, change

        for thread in threads:
            await self._update(practice_id, thread.conversation_id, None, apply)

    @staticmethod
    def _hand_over(
        thread: Thread, assignee_id: str, actor: ParticipantRef | None, change: Change
    ) -> None:
        previous = thread.assignee_id
        change.read_by.extend(thread.hand_over(assignee_id))
        change.events.append(
            ConversationAssigned(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                actor=actor,
                assignee_id=assignee_id,
                previous_assignee_id=previous,
            )
        )

    async def mark_read(self, request: MarkRead) -> ConversationSummary:
        actor = await self._actor(request.practice_id, request.actor)

        async def apply(thread: Thread) -> tuple[ConversationSummary, Change]:
            change = Change()
            if thread.reads.get(actor.key, 0) < thread.last_seq or actor.key in thread.unread_by:
                thread.reads[actor.key] = thread.last_seq
                thread.unread_by = [k for k in thread.unread_by if k != actor.key]
                change.read_by.append(actor.key)
                change.events.append(
                    MessageRead(
                        practice_id=thread.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=actor.ref,
                        reader=actor.ref,
                    )
                )
            return domain.summary(thread, actor.key), change

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def mark_unread(self, request: MarkUnread) -> ConversationSummary:
        actor = await self._actor(request.practice_id, request.actor)

        async def apply(thread: Thread) -> tuple[ConversationSummary, Change]:
            newest = thread.newest_incoming_for(actor.key)
            if newest is None:
                raise RefusalError(
                    "no_incoming_message",
                    "only a conversation with an incoming message can be marked unread",
                    409,
                )
            thread.reads[actor.key] = newest.seq - 1
            if actor.key not in thread.unread_by:
                thread.unread_by.append(actor.key)
            event = ConversationMarkedUnread(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                actor=actor.ref,
            )
            return domain.summary(thread, actor.key), Change(events=[event])

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def remove_message(self, request: RemoveMessage) -> MessageView:
        settings, actor = await self._settings_and_actor(request.practice_id, request.actor)

        async def apply(thread: Thread) -> tuple[MessageView, Change]:
            message = thread.messages.get(request.posted_message_id)
            if message is None:
                raise not_found("message")
            if message.sender != actor.ref:
                raise RefusalError("not_sender", "only the sender may remove a message", 403)
            change = Change()
            if not message.removed:
                message.removed = True
                change.events.append(
                    MessageRemoved(
                        practice_id=thread.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=actor.ref,
                        posted_message_id=message.posted_message_id,
                    )
                )
                # No email may point at it: a reminder naming it names what is still unread.
                for key, still_unread in thread.withdraw(message).items():
                    if still_unread is None:
                        change.read_by.append(key)
                    else:
                        change.withdrawn.append((key, message.posted_message_id))
                        change.reminders += await self._reminders(
                            thread, [key], still_unread, settings
                        )
            return domain.message_view(thread, message), change

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    # ------------------------------------------------------------------------- opening

    async def open_conversation(self, request: OpenConversation) -> ThreadView:
        domain.check_chosen_conversation_id(request.conversation_id)
        settings, actor, existing = await concurrently(
            self._settings(request.practice_id),
            self._actor(request.practice_id, request.actor),
            self._store.load_thread(request.practice_id, request.conversation_id),
        )
        if existing is not None:
            return await self._opened_before(existing, request, actor, settings)
        domain.require_practice_enabled(settings)
        if actor.staff is not None:
            thread = await self._staff_opens(request, actor.staff)
        elif actor.contact is None:
            assert actor.client is not None
            thread = await self._client_opens(request, actor.client)
        else:
            raise RefusalError("contact_may_not_start", "contacts may reply but not start", 403)
        change = Change(
            events=[
                ConversationOpened(
                    practice_id=thread.practice_id,
                    conversation_id=thread.conversation_id,
                    actor=actor.ref,
                    kind=thread.kind,
                    client_id=thread.client_id,
                    participants=[ref_of(k) for k in thread.participant_keys],
                )
            ]
        )
        claimed: ClientSend | None = None
        try:
            if request.first_message is not None:
                domain.check_length(request.first_message, settings)
                claimed = await self._claim_send(actor, request.practice_id, settings)
                first_id = derived_id("first", request.conversation_id)
                await self._append(
                    thread, actor.ref, first_id, request.first_message, settings, change
                )
            inserted = await self._store.insert_thread(thread, change.events)
        except BaseException:
            await self._forget_send(actor, request.practice_id, claimed)
            raise
        if not inserted:  # opened meanwhile: by this request, repeated, or by someone else
            await self._forget_send(actor, request.practice_id, claimed)
            stored = await self._store.load_thread(request.practice_id, request.conversation_id)
            if stored is None:
                raise RefusalError("busy", "the conversation is changing; try again", 503)
            return await self._opened_before(stored, request, actor, settings)
        await self._schedule(change.reminders)
        return domain.thread_view(thread, actor.ref, settings)

    async def _opened_before(
        self, existing: Thread, request: OpenConversation, actor: Actor, settings: PracticeSettings
    ) -> ThreadView:
        """A repeated open answers with the thread. An id already used for a thread the actor
        cannot see answers as if there were no such thread: its existence is not theirs to
        learn."""
        if not await self._may_view(actor, existing):
            raise not_found()
        await self._schedule(await self._first_message_reminders(existing, request, actor))
        return domain.thread_view(existing, actor.ref, settings)

    async def _first_message_reminders(
        self, thread: Thread, request: OpenConversation, actor: Actor
    ) -> list[Document]:
        """On a repeated open (a crash may have come between the thread and its reminders):
        reminders of the opener's first message for recipients who still have not read it."""
        if request.first_message is None:
            return []
        first = thread.messages.get(derived_id("first", request.conversation_id))
        if first is None or first.sender != actor.ref:
            return []
        return await self._pending_reminders(thread, first)

    def _new_thread(
        self,
        practice_id: str,
        conversation_id: str,
        kind: ConversationKind,
        subject: str,
        *,
        client: ClientRecord | None,
        participant_keys: list[str],
        assignee_id: str | None,
        client_name: str | None = None,
    ) -> Thread:
        now = self._clock()
        return Thread(
            practice_id=practice_id,
            conversation_id=conversation_id,
            kind=kind,
            subject=subject,
            client_id=client.client_id if client else None,
            client_name=client.display_name if client else client_name,
            participant_keys=list(dict.fromkeys(participant_keys)),
            assignee_id=assignee_id,
            archived=False,
            created_at=now,
            last_activity_at=now,
        )

    async def _enabled_staff(self, practice_id: str, staff_id: str) -> StaffMember:
        staff = await self._store.staff(practice_id, staff_id)
        if staff is None or not staff.active:
            raise RefusalError("unknown_participant", f"no team member {staff_id}", 422)
        domain.require_staff_enabled(staff)
        return staff

    async def _staff_opens(self, request: OpenConversation, staff: StaffMember) -> Thread:
        domain.require_staff_enabled(staff)
        keys = [f"staff:{staff.staff_id}"]
        if request.client_id is None:
            others = [p for p in request.participants if key_of(p) not in keys]
            if not others or any(p.kind != ParticipantKind.STAFF for p in others):
                raise RefusalError(
                    "staff_conversation_participants",
                    "a staff conversation needs other team members and only team members",
                    422,
                )
            for participant in others:
                await self._enabled_staff(request.practice_id, participant.id)
                keys.append(key_of(participant))
            return self._new_thread(
                request.practice_id,
                request.conversation_id,
                ConversationKind.STAFF,
                request.subject,
                client=None,
                participant_keys=keys,
                assignee_id=staff.staff_id,
            )
        client = await self._store.client(request.practice_id, request.client_id)
        if client is None:
            raise not_found("client")
        domain.check_staff_opens_with_client(staff, client)
        keys.insert(0, f"client:{client.client_id}")
        for participant in request.participants:
            keys.append(await self._checked_participant(request.practice_id, client, participant))
        return self._new_thread(
            request.practice_id,
            request.conversation_id,
            ConversationKind.CLIENT,
            request.subject,
            client=client,
            participant_keys=keys,
            assignee_id=staff.staff_id,
        )

    async def _checked_participant(
        self, practice_id: str, client: ClientRecord, participant: ParticipantRef
    ) -> str:
        if participant.kind == ParticipantKind.STAFF:
            await self._enabled_staff(practice_id, participant.id)
        elif participant.kind == ParticipantKind.CONTACT:
            contact = client.contact(participant.id)
            if contact is None:
                raise RefusalError("unknown_participant", "not a contact of this client", 422)
            domain.require_contact_enabled(contact)
        elif participant.id != client.client_id:
            raise RefusalError("unknown_participant", "one client per conversation", 422)
        return key_of(participant)

    async def _client_opens(self, request: OpenConversation, client: ClientRecord) -> Thread:
        if request.client_id not in (None, client.client_id):
            raise not_found("client")
        domain.require_client_enabled(client)
        staff_refs = [p for p in request.participants if p.kind == ParticipantKind.STAFF]
        if not staff_refs:
            if client.primary_clinician_id is None:
                raise RefusalError(
                    "no_primary_clinician", "this client has no primary clinician", 409
                )
            staff_refs = [
                ParticipantRef(kind=ParticipantKind.STAFF, id=client.primary_clinician_id)
            ]
        keys = [f"client:{client.client_id}"]
        for ref in staff_refs:
            staff = await self._store.staff(request.practice_id, ref.id)
            if staff is None or not staff.active:
                raise RefusalError("unknown_participant", f"no team member {ref.id}", 422)
            domain.check_client_opens_with(client, staff)
            keys.append(key_of(ref))
        for participant in request.participants:
            if participant.kind != ParticipantKind.STAFF:
                keys.append(
                    await self._checked_participant(request.practice_id, client, participant)
                )
        ids = [ref.id for ref in staff_refs]
        assignee = client.primary_clinician_id if client.primary_clinician_id in ids else ids[0]
        return self._new_thread(
            request.practice_id,
            request.conversation_id,
            ConversationKind.CLIENT,
            request.subject,
            client=client,
            participant_keys=keys,
            assignee_id=assignee,
        )

    # ------------------------------------------------------------------------- staff workflow

    async def assign(self, request: AssignConversation) -> ConversationSummary:
        settings, actor = await self._settings_and_actor(request.practice_id, request.actor)
        actor.require_staff()
        assignee = await self._store.staff(request.practice_id, request.assignee_id)
        if assignee is None or not assignee.active:
            raise RefusalError("unknown_assignee", f"no team member {request.assignee_id}", 422)

        async def apply(thread: Thread) -> tuple[ConversationSummary, Change]:
            if not await self._may_take_over(assignee, thread):
                raise RefusalError(
                    "assignee_without_access", "the assignee cannot see this client", 403
                )
            change = Change()
            if thread.assignee_id != assignee.staff_id:
                self._hand_over(thread, assignee.staff_id, actor.ref, change)
            # Also on a repeated request: a crash may have come between the save and the reminder.
            change.reminders += await self._handover_reminders(thread, assignee.staff_id, settings)
            return domain.summary(thread, actor.key), change

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def _handover_reminders(
        self, thread: Thread, assignee_id: str, settings: PracticeSettings
    ) -> list[Document]:
        """The new assignee's reminder of a thread handed to them unread, due the practice's
        delay after the handover; it names the newest message for them (removing that message
        revokes the link) or, on a request without messages, the request's details."""
        key = f"staff:{assignee_id}"
        if key not in thread.unread_by:
            return []
        newest = thread.newest_incoming_for(key)
        subject = ReminderSubject(
            posted_message_id=newest.posted_message_id if newest else request_details_id(thread),
            sent_at=self._clock(),
        )
        return await self._reminders(thread, [key], subject, settings)

    async def set_archived(self, request: SetArchived) -> ConversationSummary:
        actor = await self._actor(request.practice_id, request.actor)
        actor.require_staff()

        async def apply(thread: Thread) -> tuple[ConversationSummary, Change]:
            change = Change()
            if thread.archived != request.archived:
                thread.archived = request.archived
                event_type = ConversationArchived if request.archived else ConversationUnarchived
                change.events.append(
                    event_type(
                        practice_id=thread.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=actor.ref,
                    )
                )
            return domain.summary(thread, actor.key), change

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def add_note(self, request: AddNote) -> NoteView:
        actor = await self._actor(request.practice_id, request.actor)
        staff = actor.require_staff()

        async def apply(thread: Thread) -> tuple[NoteView, Change]:
            change = Change()
            note = thread.notes.get(request.note_id)
            if note is None:
                note = StoredNote(
                    note_id=request.note_id,
                    author_id=staff.staff_id,
                    body=domain.render_body(request.body),
                    created_at=self._clock(),
                )
                thread.notes[note.note_id] = note
                change.events.append(
                    NoteAdded(
                        practice_id=thread.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=actor.ref,
                        note_id=note.note_id,
                    )
                )
            return (
                NoteView(
                    note_id=note.note_id,
                    author_id=note.author_id,
                    body=note.body,
                    created_at=note.created_at,
                ),
                change,
            )

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def create_task(self, request: CreateTask) -> TaskView:
        actor = await self._actor(request.practice_id, request.actor)
        actor.require_staff()

        async def apply(thread: Thread) -> tuple[TaskView, Change]:
            change = Change()
            task = thread.tasks.get(request.task_id)
            if task is None:
                if await self._visible_task_threads(thread.practice_id, actor, request.task_id):
                    raise RefusalError("duplicate_task_id", "that task id is already used", 409)
                await self._check_task_assignee(thread, request.assignee_id)
                task = StoredTask(
                    task_id=request.task_id,
                    title=request.title,
                    assignee_id=request.assignee_id,
                    due=request.due,
                    done=False,
                    created_at=self._clock(),
                )
                thread.tasks[task.task_id] = task
                change.events.append(
                    TaskCreated(
                        practice_id=thread.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=actor.ref,
                        task_id=task.task_id,
                        assignee_id=task.assignee_id,
                    )
                )
            return domain.task_view(thread, task), change

        return await self._update(request.practice_id, request.conversation_id, actor, apply)

    async def _visible_task_threads(
        self, practice_id: str, actor: Actor, task_id: str
    ) -> list[Thread]:
        """The threads the actor can see holding a task with this id. Task ids are chosen by
        callers: one used in a thread they cannot see is neither theirs to learn of nor to
        block them."""
        return [
            thread
            for thread in await self._store.threads_with_task(practice_id, task_id)
            if await self._may_view(actor, thread)
        ]

    async def _check_task_assignee(self, thread: Thread, assignee_id: str | None) -> None:
        """A task goes to an active team member who can see its conversation."""
        if assignee_id is None:
            return
        assignee = await self._store.staff(thread.practice_id, assignee_id)
        if assignee is None or not assignee.active:
            raise RefusalError("unknown_assignee", f"no team member {assignee_id}", 422)
        if not await self._may_view(Actor(domain.staff_ref(assignee_id), staff=assignee), thread):
            raise RefusalError(
                "assignee_without_access", "the assignee cannot see this conversation", 403
            )

    async def update_task(self, request: UpdateTask) -> TaskView:
        actor = await self._actor(request.practice_id, request.actor)
        actor.require_staff()
        located = await self._visible_task_threads(request.practice_id, actor, request.task_id)
        if not located:
            raise not_found("task")
        if len(located) > 1:
            raise RefusalError(
                "ambiguous_task_id", "that task id names tasks in more than one conversation", 409
            )

        async def apply(thread: Thread) -> tuple[TaskView, Change]:
            task = thread.tasks.get(request.task_id)
            if task is None:
                raise not_found("task")
            await self._check_task_assignee(thread, request.assignee_id)
            if request.done is not None:
                task.done = request.done
            if request.title is not None:
                task.title = request.title
            if request.assignee_id is not None:
                task.assignee_id = request.assignee_id
            if request.due is not None:
                task.due = request.due
            event = TaskUpdated(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                actor=actor.ref,
                task_id=task.task_id,
                assignee_id=task.assignee_id,
                done=task.done,
            )
            return domain.task_view(thread, task), Change(events=[event])

        try:
            return await self._update(request.practice_id, located[0].conversation_id, actor, apply)
        except RefusalError as refusal:
            if refusal.code == "not_found":
                raise not_found("task") from None
            raise

    # ------------------------------------------------------------------------- settings

    async def get_settings(self, request: GetSettings) -> PracticeSettings:
        return await self._settings(request.practice_id)

    async def update_settings(self, request: UpdateSettings) -> PracticeSettings:
        current, actor = await self._settings_and_actor(request.practice_id, request.actor)
        if not actor.require_staff().is_admin:
            raise RefusalError(
                "not_permitted", "only owners and practice managers change settings", 403
            )
        changes = request.changes.model_dump(exclude_none=True)
        if request.changes.time_zone is not None:
            domain.check_time_zone(request.changes.time_zone)
        updated = PracticeSettings.model_validate({**current.model_dump(), **changes})
        event = SettingsChanged(
            practice_id=request.practice_id, actor=actor.ref, changed_fields=sorted(changes)
        )
        await self._store.save_settings(request.practice_id, updated, [event])
        if current.secure_messaging_enabled and not updated.secure_messaging_enabled:
            await self._store.drop_pending_reminders(request.practice_id)
        return updated

    async def set_messaging_enabled(self, request: SetMessagingEnabled) -> None:
        settings, actor = await self._settings_and_actor(request.practice_id, request.actor)
        if not actor.require_staff().is_admin:
            raise RefusalError(
                "not_permitted", "only owners and practice managers switch messaging", 403
            )
        subject = request.subject
        if subject.kind == ParticipantKind.STAFF:
            if await self._store.staff(request.practice_id, subject.id) is None:
                raise not_found("team member")
        elif subject.kind == ParticipantKind.CLIENT:
            client = await self._store.client(request.practice_id, subject.id)
            if client is None:
                raise not_found("client")
            if request.enabled:
                domain.require_practice_enabled(settings)
                await self._require_team_enabled_for(request.practice_id, client)
        else:
            raise RefusalError("unsupported_subject", "contacts follow their client's setting", 422)
        event = MessagingEnablementChanged(
            practice_id=request.practice_id,
            actor=actor.ref,
            subject=subject,
            enabled=request.enabled,
        )
        await self._store.set_person_enabled(
            request.practice_id, subject.kind.value, subject.id, request.enabled, [event]
        )

    async def _require_team_enabled_for(self, practice_id: str, client: ClientRecord) -> None:
        for clinician_id in sorted(client.clinician_ids):
            staff = await self._store.staff(practice_id, clinician_id)
            if staff is not None and staff.active and staff.messaging_enabled:
                return
        raise RefusalError(
            "team_member_not_enabled",
            "enable messaging for one of the client's clinicians before the client",
            409,
        )

    # ------------------------------------------------------------------------- announcements

    async def send_announcement(self, request: SendAnnouncement) -> AnnouncementResult:
        """Accept an announcement: its recipients are fixed now and their conversations are
        created in the background (`send_announcement_batch`); the reply says how far it got."""
        settings, actor = await self._settings_and_actor(request.practice_id, request.actor)
        staff = actor.require_staff()
        domain.require_practice_enabled(settings)
        domain.require_staff_enabled(staff)
        if not staff.is_admin and request.clinician_id != staff.staff_id:
            raise RefusalError(
                "not_permitted",
                "only owners and managers announce to all clients; clinicians to their own",
                403,
            )
        domain.check_length(request.body, settings)
        existing = await self._store.announcement(request.practice_id, request.announcement_id)
        if existing is None:
            recipients = sorted(
                client.client_id
                for client in await self._store.clients(
                    request.practice_id, clinician_id=request.clinician_id, active_only=True
                )
                if client.messaging_enabled
            )
            accepted = domain.Announcement(
                practice_id=request.practice_id,
                announcement_id=request.announcement_id,
                sender_id=staff.staff_id,
                subject=request.subject,
                body=request.body,
                clinician_id=request.clinician_id,
                recipient_ids=tuple(recipients),
                clients=len(recipients),
                accepted_at=self._clock(),
            )
            if not recipients:
                accepted.finish(accepted.accepted_at)
            existing = await self._store.insert_announcement(accepted)
        if existing.sender_id != staff.staff_id:
            raise RefusalError(
                "duplicate_announcement_id", "that announcement id is already used", 409
            )
        return existing.result()

    async def send_announcement_batch(
        self, announcement: domain.Announcement, client_ids: Sequence[str]
    ) -> int:
        """Create the conversations of one batch of recipients; returns how many of them now
        have theirs. Clients made inactive or disabled since the announcement was accepted are
        skipped.

        A batch may run again (its instance died, or lost its lease, before recording it): thread
        ids derive from the announcement and the client, so only missing threads are inserted;
        reminders are scheduled for the threads inserted now and, for threads that already
        existed, only while the client has not read them (a stored reminder wins over a new one,
        and one cancelled by reading is not created again).
        """
        settings = await self._settings(announcement.practice_id)
        sender = domain.staff_ref(announcement.sender_id)
        posted_message_id = derived_id("announcement", announcement.announcement_id)
        clients = [
            client
            for client in await self._store.clients_by_id(announcement.practice_id, client_ids)
            if client is not None and client.active and client.messaging_enabled
        ]
        batch: list[tuple[Thread, list[Message]]] = []
        new_reminders: dict[str, list[Document]] = {}
        for client in clients:
            thread = self._new_thread(
                announcement.practice_id,
                derived_id("announcement", announcement.announcement_id, client.client_id),
                ConversationKind.CLIENT,
                announcement.subject,
                client=client,
                participant_keys=[f"client:{client.client_id}", key_of(sender)],
                assignee_id=announcement.sender_id,
            )
            change = Change(
                events=[
                    ConversationOpened(
                        practice_id=announcement.practice_id,
                        conversation_id=thread.conversation_id,
                        actor=sender,
                        kind=thread.kind,
                        client_id=client.client_id,
                        participants=[ref_of(k) for k in thread.participant_keys],
                    )
                ]
            )
            await self._append(
                thread,
                sender,
                posted_message_id,
                announcement.body,
                settings,
                change,
                recipients=[f"client:{client.client_id}"],
            )
            batch.append((thread, change.events))
            new_reminders[thread_id(thread.practice_id, thread.conversation_id)] = change.reminders
        inserted = set(await self._store.insert_threads(batch))
        reminders = [r for key in inserted for r in new_reminders[key]]
        for thread, _ in batch:
            if thread_id(thread.practice_id, thread.conversation_id) not in inserted:
                reminders += await self._still_unread_reminders(thread, posted_message_id)
        await self._schedule(reminders)
        return len(clients)

    async def _still_unread_reminders(
        self, thread: Thread, posted_message_id: str
    ) -> list[Document]:
        stored = await self._store.load_thread(
            thread.practice_id, thread.conversation_id, for_update=False
        )
        message = stored.messages.get(posted_message_id) if stored else None
        if stored is None or message is None:
            return []
        return await self._pending_reminders(stored, message)

    async def get_announcement(self, request: GetAnnouncement) -> AnnouncementResult:
        actor = await self._actor(request.practice_id, request.actor)
        staff = actor.require_staff()
        announcement = await self._store.announcement(request.practice_id, request.announcement_id)
        if announcement is None or not domain.may_see_announcement(staff, announcement):
            raise not_found("announcement")
        return announcement.result()

    # ------------------------------------------------------------------------- queries

    async def get_thread(self, request: GetThread) -> ThreadView:
        settings, actor, thread = await concurrently(
            self._settings(request.practice_id),
            self._actor(request.practice_id, request.actor),
            self._store.load_thread(request.practice_id, request.conversation_id, for_update=False),
        )
        visible = await self._checked_visible(actor, thread)
        return domain.thread_view(visible, actor.ref, settings)

    async def list_client_conversations(
        self, request: ListClientConversations
    ) -> list[ConversationSummary]:
        actor = await self._actor(request.practice_id, request.actor)
        if actor.staff is not None:
            raise RefusalError("clients_only", "use the inbox for team members", 403)
        threads = await self._store.find_threads(
            {"practice_id": request.practice_id, "participant_keys": actor.key}
        )
        return [domain.summary(thread, actor.key) for thread in threads]

    async def get_inbox(self, request: GetInbox) -> InboxPage:
        actor = await self._actor(request.practice_id, request.actor)
        staff = actor.require_staff()
        query: Document = {"practice_id": request.practice_id, "archived": request.archived}
        if request.view == InboxView.MINE:
            query["inbox_owner_ids"] = staff.staff_id
        else:
            if not staff.may_view_others:
                raise RefusalError("not_permitted", "you may not view others' conversations", 403)
            query["kind"] = {"$ne": ConversationKind.STAFF.value}
            if request.view == InboxView.OTHERS:
                if request.assignee_id:
                    if request.assignee_id == staff.staff_id:
                        raise RefusalError("not_others", "that is your own inbox", 422)
                    query["assignee_id"] = request.assignee_id
                else:
                    query["inbox_owner_ids"] = {"$nin": [staff.staff_id]}
        if request.unread_only:
            if request.view == InboxView.MINE:
                query["unread_by"] = actor.key
            else:  # others' lists: what a team member has not read yet
                query["unread_by_staff"] = True
        activity: Document = {}
        if request.since:
            activity["$gte"] = request.since
        if request.until:
            activity["$lte"] = request.until
        if activity:
            query["last_activity_at"] = activity
        if request.search:
            pattern = search_pattern(request.search)
            query["$or"] = [{"client_name": pattern}, {"bodies": pattern}, {"subject": pattern}]
        if not staff.messages_any_client:
            reachable = await self._reachable_threads(request.practice_id, staff, query)
            query = {"$and": [query, reachable]}
        threads, total = await self._store.page_of_threads(
            query, skip=(request.page - 1) * request.page_size, limit=request.page_size
        )
        if not staff.is_admin:  # "mine" too: someone taken off a client's care loses its threads
            client_ids = [thread.client_id or "" for thread in threads]
            clients = await self._store.clients_by_id(request.practice_id, client_ids)
            visible = [
                thread
                for thread, client in zip(threads, clients, strict=True)
                if domain.staff_may_view(staff, thread, client)
            ]
            total -= len(threads) - len(visible)
            threads = visible
        return InboxPage(
            items=[domain.summary(thread, actor.key) for thread in threads],
            total=total,
            page=request.page,
            page_size=request.page_size,
        )

    async def _reachable_threads(
        self, practice_id: str, staff: StaffMember, query: Document
    ) -> Document:
        """The threads among `query` that `staff`, who may message only the clients on their
        care, may see (`domain.staff_may_view`), as a filter, so that an inbox's pages and
        total leave the others out. In an inbox they take part in each thread or may view
        others', so they see: their clients' threads, threads without a client, and inquiries
        from someone who is not a client (yet)."""
        cared_for = {
            client.client_id
            for client in await self._store.clients(practice_id, clinician_id=staff.staff_id)
        } | staff.client_ids
        inquirers = await self._store.thread_client_ids(
            {
                "$and": [
                    query,
                    {"kind": ConversationKind.INQUIRY.value},
                    {"client_id": {"$nin": sorted(cared_for)}},
                ]
            }
        )
        now_clients = [
            client.client_id
            for client in await self._store.clients_by_id(practice_id, sorted(inquirers))
            if client is not None
        ]
        return {
            "$or": [
                {"client_id": {"$in": sorted(cared_for)}},
                {"client_id": None},
                {"kind": ConversationKind.INQUIRY.value, "client_id": {"$nin": now_clients}},
            ]
        }

    async def copy_messages(self, request: CopyMessages) -> TextResult:
        actor = await self._actor(request.practice_id, request.actor)
        actor.require_staff()
        thread = await self._visible_thread(request.practice_id, request.conversation_id, actor)
        names = await self._names(thread)
        return TextResult(text=domain.copy_text(thread, request.posted_message_ids, names))

    async def _names(self, *threads: Thread) -> dict[str, str]:
        keys: set[str] = set()
        for thread in threads:
            keys.update(thread.participant_keys)
            keys.update(f"staff:{n.author_id}" for n in thread.notes.values())
            keys.update(key_of(m.sender) for m in thread.messages.values() if m.sender)
        return await self._store.names(threads[0].practice_id, keys) if threads else {}

    async def get_transcript(self, request: GetTranscript) -> TextResult:
        actor = await self._actor(request.practice_id, request.actor)
        staff = actor.require_staff()
        client = await self._store.client(request.practice_id, request.client_id)
        if client is None or not domain.staff_may_view_transcript(staff, client):
            raise not_found("client")
        threads = await self._store.find_threads(
            {"practice_id": request.practice_id, "client_id": request.client_id}
        )
        threads.sort(key=lambda t: t.created_at)
        names = await self._names(*threads)
        title = f"Transcript for {client.display_name} ({client.client_id})\n\n"
        return TextResult(text=title + "\n".join(domain.transcript_text(t, names) for t in threads))

    async def export_practice(self, request: ExportPractice) -> ExportResult:
        actor = await self._actor(request.practice_id, request.actor)
        staff = actor.require_staff()
        if not (staff.is_admin and staff.can_export):
            raise RefusalError(
                "export_not_permitted",
                "exports are for owners and managers with export permission",
                403,
            )
        query: Document = {"practice_id": request.practice_id}
        if request.clinician_id:
            clients = await self._store.clients(
                request.practice_id, clinician_id=request.clinician_id
            )
            query["client_id"] = {"$in": [client.client_id for client in clients]}
        threads = await self._store.find_threads(query)
        threads.sort(key=lambda t: t.created_at)
        names = await self._names(*threads)
        return build_archive(request.practice_id, threads, names, request.password, self._clock())

    # ------------------------------------------------------------------------- inbound

    async def practice_upserted(self, event: PracticeUpserted) -> None:
        if event.time_zone is not None:
            try:
                domain.check_time_zone(event.time_zone)
            except RefusalError as refusal:
                raise PoisonMessageError(refusal.detail) from None
        await self._store.ensure_practice(event.practice_id, event.time_zone)

    async def client_upserted(self, event: ClientUpserted) -> None:
        await self._store.ensure_practice(event.practice_id)
        settings = await self._settings(event.practice_id)
        previous = await self._store.client(event.practice_id, event.client_id)
        if event.messaging_enabled is not None:
            enabled = event.messaging_enabled
        elif previous is not None:
            enabled = previous.messaging_enabled
        else:
            enabled = settings.auto_enable_new_clients
        clinicians = list(dict.fromkeys(event.clinician_ids))
        fields: Document = {
            "display_name": event.display_name,
            "primary_clinician_id": event.primary_clinician_id,
            "clinician_ids": clinicians,
            "all_clinician_ids": sorted({*clinicians, *filter(None, [event.primary_clinician_id])}),
            "messaging_enabled": enabled,
            "active": event.active,
            "contacts": [
                {
                    "contact_id": c.contact_id,
                    "relation": c.relation.value,
                    "display_name": c.display_name,
                    "messaging_enabled": c.messaging_enabled,
                    "can_message": c.can_message,
                }
                for c in event.contacts
            ],
            "contact_ids": [c.contact_id for c in event.contacts],
        }
        stored = await self._store.upsert_person(
            event.practice_id, "client", event.client_id, fields, event.occurred_at
        )
        applied = _applied(stored, event.occurred_at)
        if applied and previous and previous.display_name != event.display_name:
            await self._store.rename_client(event.practice_id, event.client_id, event.display_name)
        # Re-homed after the write, so a crash in between leaves it to the client's next
        # message (`post_message` checks for an orphan as well).
        if applied and previous and previous.clinician_ids - set(fields["all_clinician_ids"]):
            await self._rehome_threads(event.practice_id, {"client_id": event.client_id})

    async def staff_upserted(self, event: StaffUpserted) -> None:
        await self._store.ensure_practice(event.practice_id)
        fields: Document = {
            "display_name": event.display_name,
            "roles": [role.value for role in event.roles],
            "client_ids": list(event.client_ids),
            "can_view_others": event.can_view_others_conversations,
            "can_export": event.can_export,
            "email_notifications": event.email_notifications,
            "active": event.active,
        }
        if event.messaging_enabled is not None:  # else as switched in the inbox (new: on)
            fields["messaging_enabled"] = event.messaging_enabled
        stored = await self._store.upsert_person(
            event.practice_id, "staff", event.staff_id, fields, event.occurred_at
        )
        previous = staff_from(stored) if stored else None
        access_lost = previous is not None and (
            (previous.active and not event.active)
            or bool(previous.client_ids - set(event.client_ids))
            or bool(previous.roles - set(event.roles))
        )
        if access_lost and _applied(stored, event.occurred_at):
            await self._rehome_threads(
                event.practice_id,
                {"inbox_owner_ids": event.staff_id, "kind": {"$ne": ConversationKind.STAFF.value}},
            )

    async def _known_client(
        self, practice_id: str, client_id: str
    ) -> tuple[PracticeSettings, ClientRecord]:
        settings = await self._store.practice_settings(practice_id)
        if settings is None:
            raise NotYetKnownError(f"unknown practice {practice_id}")
        client = await self._store.client(practice_id, client_id)
        if client is None:
            raise NotYetKnownError(f"unknown client {client_id} in practice {practice_id}")
        return settings, client

    async def _system_thread(
        self,
        practice_id: str,
        prefix: str,
        parts: Sequence[str],
        is_own: Callable[[Thread], bool],
    ) -> tuple[str, Thread | None]:
        """The id of the thread the service keeps under `prefix` for `parts`, and the thread if
        it exists. Before callers were kept off these ids (`check_chosen_conversation_id`)
        anyone could open a conversation under one and so receive what was meant for someone
        else, or have it dropped: a thread under the id that `is_own` does not recognise is
        passed over for the next id derived from the same parts."""
        for attempt in range(SYSTEM_ID_ATTEMPTS):
            conversation_id = derived_id(prefix, *parts, *([f"#{attempt}"] if attempt else []))
            thread = await self._store.load_thread(practice_id, conversation_id)
            if thread is None or is_own(thread):
                return conversation_id, thread
        raise PoisonMessageError(f"every {prefix} thread id for {'/'.join(parts)} is taken")

    async def _lead_id(self, practice_id: str) -> str | None:
        """Who takes an inbound thread nobody was named for: a practice manager, else an owner."""
        leads = await self._store.practice_leads(practice_id)
        return leads[0].staff_id if leads else None

    async def _open_inbound(self, thread: Thread, change: Change) -> None:
        change.events.insert(
            0,
            ConversationOpened(
                practice_id=thread.practice_id,
                conversation_id=thread.conversation_id,
                kind=thread.kind,
                client_id=thread.client_id,
                participants=[ref_of(k) for k in thread.participant_keys],
            ),
        )
        await self._store.insert_thread(thread, change.events)
        await self._schedule(change.reminders)

    async def appointment_requested(self, event: AppointmentRequested) -> None:
        settings, client = await self._known_client(event.practice_id, event.client_id)
        conversation_id, existing = await self._system_thread(
            event.practice_id,
            "appointment-request",
            [event.request_id],
            lambda thread: (
                thread.kind == ConversationKind.APPOINTMENT_REQUEST
                and thread.client_id == client.client_id
            ),
        )
        if existing is not None:
            # A crash may have come between the thread and its reminder.
            await self._schedule(await self._request_reminders(existing, settings))
            return
        assignee = (
            event.clinician_id
            or client.primary_clinician_id
            or await self._lead_id(event.practice_id)
        )
        thread = self._new_thread(
            event.practice_id,
            conversation_id,
            ConversationKind.APPOINTMENT_REQUEST,
            "Appointment request",
            client=client,
            participant_keys=[f"client:{client.client_id}"],
            assignee_id=assignee,
        )
        requested = (
            f"Requested start: {event.requested_start.isoformat()}\n"
            if event.requested_start
            else ""
        )
        thread.request_details = f"{requested}{event.details}".strip()
        if assignee:
            thread.unread_by = [f"staff:{assignee}"]
        await self._open_inbound(
            thread, Change(reminders=await self._request_reminders(thread, settings))
        )

    async def _request_reminders(
        self, thread: Thread, settings: PracticeSettings
    ) -> list[Document]:
        """The assignee's reminder of an appointment request they have not opened yet: the
        request's details stand in for a first message."""
        details = ReminderSubject(
            posted_message_id=request_details_id(thread), sent_at=thread.created_at
        )
        return await self._reminders(thread, thread.unread_by, details, settings)

    async def inquiry_received(self, event: InquiryReceived) -> None:
        settings = await self._store.practice_settings(event.practice_id)
        if settings is None:
            raise NotYetKnownError(f"unknown practice {event.practice_id}")
        conversation_id, existing = await self._system_thread(
            event.practice_id,
            "inquiry",
            [event.inquiry_id],
            lambda thread: (
                thread.kind == ConversationKind.INQUIRY and thread.client_id == event.client_id
            ),
        )
        message_id = derived_id("inquiry-message", event.inquiry_id)
        if existing is not None:
            # A crash may have come between the thread and its reminders.
            if message_id in existing.messages:
                message = existing.messages[message_id]
                await self._schedule(await self._pending_reminders(existing, message))
            return
        thread = self._new_thread(
            event.practice_id,
            conversation_id,
            ConversationKind.INQUIRY,
            "Inquiry",
            client=None,
            client_name=event.display_name,
            participant_keys=[f"client:{event.client_id}"],
            assignee_id=event.clinician_id or await self._lead_id(event.practice_id),
        )
        thread.client_id = event.client_id
        change = Change()
        if event.body:
            await self._append(
                thread,
                domain.client_ref(event.client_id),
                message_id,
                event.body,
                settings,
                change,
            )
        await self._open_inbound(thread, change)

    async def client_email_workflow(self, event: ClientEmailWorkflowEvent) -> None:
        if isinstance(event, InquiryResponse) and (inquiry := await self._prospect_inquiry(event)):
            await self._record_email_history(event, inquiry, [domain.client_ref(event.client_id)])
            return
        settings, client = await self._known_client(event.practice_id, event.client_id)
        # one email per person, however often the event names them
        recipients = list(dict.fromkeys(event.recipients)) or [domain.client_ref(client.client_id)]
        for recipient in recipients:
            known = (
                recipient.kind == ParticipantKind.CLIENT and recipient.id == client.client_id
            ) or (recipient.kind == ParticipantKind.CONTACT and client.contact(recipient.id))
            if not known:
                raise NotYetKnownError(
                    f"recipient {recipient.kind.value} {recipient.id} does not belong to the client"
                )
        portal_open = (
            settings.route_client_emails_through_portal and settings.secure_messaging_enabled
        )
        through_portal = [r for r in recipients if portal_open and client.reads_portal(r)]
        for recipient in through_portal:
            own = await self._notices_thread(event.practice_id, client, recipient)
            await self._deliver_through_portal(event, own, [recipient], settings)
        if by_email := [r for r in recipients if r not in through_portal]:
            thread = await self._notices_thread(event.practice_id, client)
            await self._record_email_history(event, thread, by_email)

    async def _prospect_inquiry(self, event: InquiryResponse) -> Thread | None:
        """The inquiry of someone not a client yet, whom a response goes to by email alone."""
        if await self._store.client(event.practice_id, event.client_id) is not None:
            return None
        inquiries = await self._store.find_threads(
            {
                "practice_id": event.practice_id,
                "client_id": event.client_id,
                "kind": ConversationKind.INQUIRY.value,
            },
            limit=1,
        )
        return inquiries[0] if inquiries else None

    async def _notices_thread(
        self, practice_id: str, client: ClientRecord, person: ParticipantRef | None = None
    ) -> Thread:
        """The thread of the practice's notices to one person: the client (`person` None) or
        one of their contacts, each their own, so that what one of them writes back, and the
        team's answer, reaches nobody else on the client's side."""
        person = person or domain.client_ref(client.client_id)
        owner = key_of(person)
        parts = (
            [client.client_id]
            if person.kind == ParticipantKind.CLIENT
            else [client.client_id, owner]
        )
        conversation_id, thread = await self._system_thread(
            practice_id,
            "notices",
            parts,
            lambda thread: (
                thread.kind == ConversationKind.CLIENT
                and thread.client_id == client.client_id
                and thread.notices_owner == owner
            ),
        )
        if thread is not None:
            return thread
        thread = self._new_thread(
            practice_id,
            conversation_id,
            ConversationKind.CLIENT,
            "Messages from the practice",
            client=client,
            participant_keys=[owner],
            assignee_id=client.primary_clinician_id,
        )
        await self._open_inbound(thread, Change())
        loaded = await self._store.load_thread(practice_id, conversation_id)
        assert loaded is not None
        return loaded

    async def _deliver_through_portal(
        self,
        event: ClientEmailWorkflowEvent,
        thread: Thread,
        recipients: Sequence[ParticipantRef],
        settings: PracticeSettings,
    ) -> None:
        posted_ids = {
            key_of(r): derived_id("workflow", str(event.message_id), key_of(r)) for r in recipients
        }

        async def apply(loaded: Thread) -> tuple[None, Change]:
            change = Change()
            for recipient in recipients:
                key = key_of(recipient)
                if key not in loaded.participant_keys:
                    loaded.participant_keys.append(key)
                if posted_ids[key] in loaded.messages:
                    continue
                message = await self._append(
                    loaded,
                    None,
                    posted_ids[key],
                    event.content or event.WORKFLOW.value,
                    settings,
                    change,
                    recipients=[key],
                )
                # Each notice is its own email, saved with its message: not an unread reminder,
                # which one unread notice before it would hold back.
                change.events.append(
                    UnreadReminderDue(
                        message_id=uuid.uuid5(_REMINDERS, f"notice\x1f{posted_ids[key]}"),
                        practice_id=loaded.practice_id,
                        conversation_id=loaded.conversation_id,
                        recipient=recipient,
                        posted_message_id=message.posted_message_id,
                    )
                )
            change.reminders = []
            return None, change

        system = Actor(domain.staff_ref(domain.SYSTEM_AUTHOR), staff=_SYSTEM)
        await self._update(thread.practice_id, thread.conversation_id, system, apply)

    async def _record_email_history(
        self, event: ClientEmailWorkflowEvent, thread: Thread, recipients: Sequence[ParticipantRef]
    ) -> None:
        note_id = derived_id("email", str(event.message_id))

        async def apply(loaded: Thread) -> tuple[None, Change]:
            if note_id in loaded.notes:
                return None, Change()
            who = ", ".join(key_of(r) for r in recipients)
            loaded.notes[note_id] = StoredNote(
                note_id=note_id,
                author_id=domain.SYSTEM_AUTHOR,
                body=(
                    f"Email sent: {event.WORKFLOW.value} (reference {event.reference_id}) to {who}."
                    + (f"\n{event.content}" if event.content else "")
                ),
                created_at=self._clock(),
            )
            events: list[Message] = [
                ClientEmailDue(
                    practice_id=event.practice_id,
                    client_id=event.client_id,
                    recipient=recipient,
                    workflow=event.WORKFLOW,
                    reference_id=event.reference_id,
                    conversation_id=loaded.conversation_id,
                )
                for recipient in recipients
            ]
            return None, Change(events=events)

        system = Actor(domain.staff_ref(domain.SYSTEM_AUTHOR), staff=_SYSTEM)
        await self._update(thread.practice_id, thread.conversation_id, system, apply)


_REMINDERS = uuid.UUID("0b6f7c1e-3f1d-5a8e-9c39-6a0e8d7c2b51")

_SYSTEM = StaffMember(
    staff_id=domain.SYSTEM_AUTHOR,
    display_name="Practice",
    roles=frozenset(domain.ADMIN_ROLES),
)


def reminder_event(reminder: Document) -> UnreadReminderDue:
    """The event of one stored reminder: its id derives from the reminder and its generation,
    so emitting the same reminder twice (a repeated claim, a relay) is one event to consumers."""
    return UnreadReminderDue(
        message_id=uuid.uuid5(_REMINDERS, f"{reminder['_id']}\x1f{reminder['generation']}"),
        practice_id=reminder["practice_id"],
        conversation_id=reminder["conversation_id"],
        recipient=ref_of(reminder["recipient"]),
        posted_message_id=reminder["posted_message_id"],
    )
