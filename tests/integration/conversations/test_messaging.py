"""Threads and messages: open, post, read receipts, emoji, idempotency, limits, removal."""

from __future__ import annotations

from typing import Any

from sotto_contracts.common import ParticipantRef
from sotto_contracts.conversations import (
    ConversationKind,
    ConversationOpened,
    ConversationSummary,
    GetThread,
    GetTranscript,
    ListClientConversations,
    MarkRead,
    MessagePosted,
    MessageRead,
    MessageRemoved,
    MessageView,
    OpenConversation,
    PostMessage,
    RemoveMessage,
    TextResult,
    ThreadView,
)
from tests.integration.conversations.conftest import PRACTICE, Harness, Team


def opening(
    actor: ParticipantRef, conversation_id: str = "conv-1", **fields: Any
) -> OpenConversation:
    return OpenConversation.model_validate(
        {
            "practice_id": PRACTICE,
            "actor": actor,
            "conversation_id": conversation_id,
            "subject": "Check-in",
            **fields,
        }
    )


def posting(
    actor: ParticipantRef,
    body: str,
    message_id: str,
    conversation_id: str = "conv-1",
    practice_id: str = PRACTICE,
) -> PostMessage:
    return PostMessage(
        practice_id=practice_id,
        actor=actor,
        conversation_id=conversation_id,
        posted_message_id=message_id,
        body=body,
    )


async def test_client_conversation_with_contact_read_receipts_and_emoji(
    harness: Harness, team: Team
) -> None:
    opened = await harness.ok(
        opening(
            team.primary, client_id="c1", participants=[team.partner], first_message="Hi :smile:"
        ),
        ThreadView,
    )
    assert opened.conversation.kind == ConversationKind.CLIENT
    assert opened.conversation.client_name == "Alex Rivera"
    assert {p.id for p in opened.conversation.participants} == {"c1", "dr-primary", "c1-partner"}
    assert opened.messages[0].body == "Hi 😄"

    reply = await harness.ok(posting(team.client, "Thanks :+1:", "m-client-1"), MessageView)
    assert reply.body == "Thanks 👍"
    assert reply.sender == team.client

    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.primary, conversation_id="conv-1"),
        ConversationSummary,
    )
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.partner, conversation_id="conv-1"), ThreadView
    )
    readers = {message.message_id: {r.id for r in message.read_by} for message in thread.messages}
    assert readers["m-client-1"] == {"c1", "dr-primary"}
    assert "c1-partner" not in readers["m-client-1"]
    assert thread.conversation.unread is True
    assert thread.notes == []
    assert thread.tasks == []

    posted = await harness.events.wait_for(MessagePosted, posted_message_id="m-client-1")
    assert {r["id"] for r in posted[0]["recipients"]} == {"dr-primary", "c1-partner"}
    assert "Thanks" not in str(harness.events.received)
    await harness.events.wait_for(ConversationOpened, conversation_id="conv-1")
    await harness.events.wait_for(MessageRead, conversation_id="conv-1")

    listed = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=team.client), ConversationSummary
    )
    assert [summary.conversation_id for summary in listed] == ["conv-1"]


async def test_posting_is_idempotent_on_the_senders_message_id(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.primary, client_id="c1"), ThreadView)
    first = await harness.ok(posting(team.primary, "Once", "m-1"), MessageView)
    again = await harness.ok(posting(team.primary, "Once", "m-1"), MessageView)
    assert first == again
    problem = await harness.problem(posting(team.client, "Mine", "m-1"))
    assert (problem.code, problem.status) == ("duplicate_message_id", 409)
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv-1"), ThreadView
    )
    assert [m.message_id for m in thread.messages] == ["m-1"]
    await harness.events.wait_for(MessagePosted, posted_message_id="m-1")
    assert len(harness.events.of(MessagePosted, posted_message_id="m-1")) == 1


async def test_bodies_over_the_limits_are_refused_and_change_nothing(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.primary, client_id="c1"), ThreadView)
    too_long = posting(team.primary, "x", "m-long").model_copy(update={"body": "x" * 5001})
    problem = await harness.problem(too_long)
    assert (problem.code, problem.status) == ("invalid_message", 422)

    await harness.configure(team.owner, max_message_length=10)
    problem = await harness.problem(posting(team.primary, "x" * 11, "m-eleven"))
    assert (problem.code, problem.status) == ("message_too_long", 413)
    accepted = await harness.ok(posting(team.primary, "x" * 10, "m-ten"), MessageView)
    assert accepted.body == "x" * 10

    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv-1"), ThreadView
    )
    assert [m.message_id for m in thread.messages] == ["m-ten"]
    assert thread.max_message_length == 10


async def test_unknown_ids_and_wrong_practice_get_not_found(harness: Harness, team: Team) -> None:
    await harness.ok(opening(team.primary, client_id="c1"), ThreadView)
    cases = [
        posting(team.primary, "hello", "m-x", conversation_id="no-such-conversation"),
        posting(team.primary, "hello", "m-x", practice_id="other-practice"),
        posting(team.stranger_clinician, "hello", "m-x"),
        GetThread(practice_id="other-practice", actor=team.primary, conversation_id="conv-1"),
        GetThread(practice_id=PRACTICE, actor=team.stranger_clinician, conversation_id="conv-1"),
        opening(team.primary, "conv-2", client_id="no-such-client"),
    ]
    for request in cases:
        problem = await harness.problem(request)
        assert (problem.code, problem.status) == ("not_found", 404), request
    await harness.add_client("c2", primary_clinician_id="dr-other")
    problem = await harness.problem(
        GetThread(
            practice_id=PRACTICE,
            actor=team.client.model_copy(update={"id": "c2"}),
            conversation_id="conv-1",
        )
    )
    assert (problem.code, problem.status) == ("not_found", 404)
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv-1"), ThreadView
    )
    assert thread.messages == []


async def test_removed_message_shows_removed_to_both_sides_and_stays_in_transcript(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.primary, client_id="c1"), ThreadView)
    await harness.ok(posting(team.primary, "Sent to the wrong client", "m-wrong"), MessageView)
    problem = await harness.problem(
        RemoveMessage(
            practice_id=PRACTICE,
            actor=team.client,
            conversation_id="conv-1",
            posted_message_id="m-wrong",
        )
    )
    assert (problem.code, problem.status) == ("not_sender", 403)
    removed = await harness.ok(
        RemoveMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv-1",
            posted_message_id="m-wrong",
        ),
        MessageView,
    )
    assert removed.removed
    assert removed.body == ""
    for viewer in (team.client, team.primary):
        thread = await harness.ok(
            GetThread(practice_id=PRACTICE, actor=viewer, conversation_id="conv-1"), ThreadView
        )
        assert thread.messages[0].removed
        assert thread.messages[0].body == ""
    event = await harness.events.wait_for(MessageRemoved, posted_message_id="m-wrong")
    assert event[0]["conversation_id"] == "conv-1"

    transcript = await harness.ok(
        GetTranscript(practice_id=PRACTICE, actor=team.primary, client_id="c1"), TextResult
    )
    assert "[REMOVED]: Sent to the wrong client" in transcript.text
