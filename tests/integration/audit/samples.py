"""One event of every kind the audit log projects, with content planted where a leak would show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sotto_audit.domain import Category, Draft
from sotto_contracts import conversations as cv
from sotto_contracts import gateway as gw
from sotto_contracts import notifier as nf
from sotto_contracts.base import Event
from sotto_contracts.common import ClientEmailWorkflow, NotificationKind, ParticipantKind
from sotto_contracts.common import ParticipantRef as Ref

LEAKED_ADDRESS = "jane.doe@example.org"
LEAKED_BODY = "I have been feeling hopeless since the divorce"

CLIENT = Ref(kind=ParticipantKind.CLIENT, id="client-1")
STAFF = Ref(kind=ParticipantKind.STAFF, id="staff-1")


def every_event(practice_id: str, *, at: datetime | None = None) -> list[Event]:
    at = at or datetime.now(UTC)
    p: dict[str, Any] = {"practice_id": practice_id, "occurred_at": at}
    delivery: dict[str, Any] = {
        **p,
        "notification_id": "n-1",
        "kind": NotificationKind.SECURE_MESSAGE_WAITING,
        "recipient": CLIENT,
        "conversation_id": "conv-1",
        "attempt": 1,
        "smtp_code": 250,
        "smtp_reply": f"2.0.0 OK queued for <{LEAKED_ADDRESS}> {LEAKED_BODY}",
    }
    link: dict[str, Any] = {**p, "link_id": "link-1", "recipient": CLIENT}
    conv: dict[str, Any] = {**p, "conversation_id": "conv-1", "actor": STAFF}
    return [
        nf.EmailDelivered(**delivery),
        nf.EmailDeferred(**delivery, retry_in_seconds=30),
        nf.EmailFailed(**delivery),
        nf.EmailAmbiguous(**delivery),
        gw.LinkIssued(
            **link,
            conversation_id="conv-1",
            expires_at=at + timedelta(hours=24),
            notification_id="n-1",
        ),
        gw.LinkOpened(**link, conversation_id="conv-1"),
        gw.LinkRefused(**link, reason=gw.LinkRefusalReason.EXPIRED),
        gw.LinkRevoked(**link, conversation_id="conv-1"),
        gw.VerificationFailed(**link, failed_attempts=2),
        gw.VerificationSucceeded(**link),
        gw.LinkLocked(**link),
        gw.SignInRequested(**p, recipient=CLIENT, notification_id="n-2"),
        gw.SessionStarted(
            **p,
            session_ref="sess-1",
            principal=CLIENT,
            conversation_id="conv-1",
            via=LEAKED_BODY[:32],
        ),
        gw.SessionEnded(**p, session_ref="sess-1", principal=CLIENT, reason=LEAKED_ADDRESS),
        gw.StaffViewedConversation(
            **p, staff_id="staff-1", conversation_id="conv-1", client_id="client-1"
        ),
        gw.ClientViewedConversation(**p, principal=CLIENT, conversation_id="conv-1"),
        gw.ExportMade(
            **p,
            staff_id="staff-1",
            scope=f"client:client-1 {LEAKED_ADDRESS}",
            password_protected=True,
        ),
        gw.ExportMade(**p, staff_id="staff-2", scope="client:client-1", password_protected=False),
        cv.ConversationOpened(
            **conv,
            kind=cv.ConversationKind.CLIENT,
            client_id="client-1",
            participants=[CLIENT, STAFF],
        ),
        cv.MessagePosted(**conv, posted_message_id="m-1", recipients=[CLIENT]),
        cv.MessageRead(**conv, reader=CLIENT),
        cv.MessageRemoved(**conv, posted_message_id="m-1"),
        cv.ConversationAssigned(**conv, assignee_id="staff-2", previous_assignee_id="staff-1"),
        cv.ConversationArchived(**conv),
        cv.ConversationUnarchived(**conv),
        cv.ConversationMarkedUnread(**conv),
        cv.NoteAdded(**conv, note_id="note-1"),
        cv.TaskCreated(**conv, task_id="task-1", assignee_id=None),
        cv.UnreadReminderDue(**conv, recipient=CLIENT, posted_message_id="m-1"),
        cv.SettingsChanged(**p, actor=STAFF, changed_fields=["away_message", LEAKED_BODY]),
        cv.MessagingEnablementChanged(**p, actor=STAFF, subject=CLIENT, enabled=True),
        cv.ClientEmailDue(
            **p,
            client_id="client-1",
            recipient=CLIENT,
            workflow=ClientEmailWorkflow.STATEMENT_READY,
            reference_id="stmt-1",
        ),
    ]


def access_draft(practice_id: str, event_id: str) -> Draft:
    """A link-opened record before it has a place in the chain."""
    return Draft(
        event_id=event_id,
        routing_key=gw.LinkOpened.ROUTING_KEY,
        practice_id=practice_id,
        category=Category.ACCESS,
        occurred_at=datetime.now(UTC),
        actor_id=None,
        subject_id="client-1",
        conversation_id="conv-1",
        outcome="opened",
    )
