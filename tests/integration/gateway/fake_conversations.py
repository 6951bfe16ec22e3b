"""A stand-in for conversations and audit over the real broker, until those services run here.

It answers like the contract says, refuses conversations of other practices or clients with
404, and records every request so tests can check what the gateway asked and for whom.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from sotto_contracts.audit import AuditPage
from sotto_contracts.base import Reply
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.conversations import (
    ConversationKind,
    ConversationSummary,
    ExportResult,
    InboxPage,
    MessageView,
    NoteView,
    PracticeSettings,
    TaskView,
    TextResult,
    ThreadView,
)
from sotto_kit.messaging import ok, refused
from tests.integration.gateway.conftest import PRACTICE
from tests.integration.gateway.support import Broker

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CLIENT = ParticipantRef(kind=ParticipantKind.CLIENT, id="c1")
CLINICIAN = ParticipantRef(kind=ParticipantKind.STAFF, id="clin1")
NOTE_TEXT = "internal note: do not show"
TASK_TITLE = "call back about forms"


def summary() -> ConversationSummary:
    return ConversationSummary(
        conversation_id="conv1",
        kind=ConversationKind.CLIENT,
        subject="Scheduling",
        client_id="c1",
        client_name="Alex Rivera",
        participants=[CLIENT, CLINICIAN],
        assignee_id="clin1",
        archived=False,
        unread=True,
        last_activity_at=NOW,
    )


def thread() -> ThreadView:
    return ThreadView(
        conversation=summary(),
        messages=[
            MessageView(
                message_id="m1",
                conversation_id="conv1",
                sender=CLINICIAN,
                body="See you Tuesday",
                sent_at=NOW,
            ),
            MessageView(
                message_id="m2",
                conversation_id="conv1",
                sender=CLINICIAN,
                body="sent in error",
                sent_at=NOW,
                removed=True,
            ),
        ],
        notes=[NoteView(note_id="n1", author_id="clin1", body=NOTE_TEXT, created_at=NOW)],
        tasks=[
            TaskView(
                task_id="t1",
                conversation_id="conv1",
                title=TASK_TITLE,
                assignee_id="clin1",
                due=None,
                done=False,
                created_at=NOW,
            )
        ],
        request_details="wants mornings",
        banner="Welcome",
    )


def _sees_conversation(body: dict[str, Any]) -> bool:
    actor = body.get("actor") or {}
    if body["practice_id"] != PRACTICE or body.get("conversation_id") != "conv1":
        return False
    return actor.get("kind") == "staff" or actor == CLIENT.model_dump(mode="json")


def _conversation_request(body: dict[str, Any]) -> Reply:
    return ok() if _sees_conversation(body) else refused("not_found", "no such thing", 404)


def _thread(body: dict[str, Any]) -> Reply:
    return ok(thread()) if _sees_conversation(body) else refused("not_found", "no such", 404)


async def start_fake_services(broker: Broker, settings: PracticeSettings) -> None:
    answers = {
        "conversations.get_settings.v1": lambda _: ok(settings),
        "conversations.update_settings.v1": lambda _: ok(settings),
        "conversations.get_thread.v1": _thread,
        "conversations.get_inbox.v1": lambda _: ok(
            InboxPage(items=[summary()], total=1, page=1, page_size=25)
        ),
        "conversations.list_client_conversations.v1": lambda body: Reply(
            ok=True,
            result=[summary().model_dump(mode="json")]
            if body["actor"] == CLIENT.model_dump(mode="json")
            else [],
        ),
        "conversations.open_conversation.v1": lambda body: ok(summary()),
        "conversations.post_message.v1": _conversation_request,
        "conversations.mark_read.v1": _conversation_request,
        "conversations.mark_unread.v1": _conversation_request,
        "conversations.assign_conversation.v1": _conversation_request,
        "conversations.set_archived.v1": _conversation_request,
        "conversations.add_note.v1": _conversation_request,
        "conversations.create_task.v1": _conversation_request,
        "conversations.remove_message.v1": _conversation_request,
        "conversations.update_task.v1": lambda _: ok(),
        "conversations.copy_messages.v1": lambda _: ok(TextResult(text="copied")),
        "conversations.send_announcement.v1": lambda _: ok(),
        "conversations.set_messaging_enabled.v1": lambda _: ok(),
        "conversations.get_transcript.v1": lambda _: ok(TextResult(text="transcript")),
        "conversations.export_practice.v1": lambda _: ok(
            ExportResult(
                filename="export.zip",
                content_type="application/zip",
                archive_base64=base64.b64encode(b"PK-archive").decode(),
            )
        ),
        "audit.get_delivery_log.v1": lambda _: ok(
            AuditPage(items=[], total=0, page=1, page_size=50)
        ),
        "audit.get_access_log.v1": lambda _: ok(AuditPage(items=[], total=0, page=1, page_size=50)),
    }
    for routing_key, responder in answers.items():
        await broker.answer(routing_key, responder)
