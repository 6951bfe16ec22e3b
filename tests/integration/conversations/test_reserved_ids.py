"""Conversation ids the service derives for its own threads (a client's notices, appointment
requests, inquiries) can be computed by anyone who knows the ids they derive from: callers may
not take them, a thread taken under one before that rule is passed over, and opening with the id
of a thread one cannot see answers as if there were none."""

from __future__ import annotations

from typing import Any

from sotto_contracts.common import ParticipantRef
from sotto_contracts.conversations import (
    ConversationSummary,
    GetThread,
    ListClientConversations,
    OpenConversation,
    ThreadView,
    UnreadReminderDue,
)
from sotto_contracts.inbound import AppointmentRequested, InquiryReceived, StatementReady
from sotto_conversations.handlers import derived_id
from tests.integration.conversations.conftest import PRACTICE, Harness, Team, client


def opening(actor: ParticipantRef, conversation_id: str, **fields: Any) -> OpenConversation:
    return OpenConversation.model_validate(
        {
            "practice_id": PRACTICE,
            "actor": actor,
            "conversation_id": conversation_id,
            "subject": "Hello",
            **fields,
        }
    )


async def take_before_the_rule(harness: Harness, owned_by: ParticipantRef, *taken: str) -> None:
    """Threads the client opened under derived ids while callers still could (stored data)."""
    await harness.ok(opening(owned_by, "taken-from", first_message="Mine now"), ThreadView)
    threads = harness.database["threads"]
    document = await threads.find_one({"_id": f"{PRACTICE}:taken-from"})
    assert document is not None
    for conversation_id in taken:
        await threads.insert_one(
            {**document, "_id": f"{PRACTICE}:{conversation_id}", "conversation_id": conversation_id}
        )


async def test_callers_may_not_open_a_conversation_under_a_derived_id(
    harness: Harness, team: Team
) -> None:
    await harness.add_client("c2", primary_clinician_id="dr-primary")
    for actor, taken in (
        (team.client, derived_id("notices", "c2")),
        (team.client, derived_id("inquiry", "inq-1")),
        (team.primary, derived_id("appointment-request", "req-1")),
    ):
        problem = await harness.problem(opening(actor, taken, client_id="c1"))
        assert (problem.code, problem.status) == ("reserved_conversation_id", 422)
    assert await harness.database["threads"].count_documents({}) == 0


async def test_notices_never_go_to_a_thread_another_client_took_under_their_id(
    harness: Harness, team: Team
) -> None:
    await harness.add_client("c2", primary_clinician_id="dr-primary")
    taken = derived_id("notices", "c2")
    await take_before_the_rule(harness, team.client, taken)

    await harness.amqp.publish(
        StatementReady(practice_id=PRACTICE, client_id="c2", reference_id="st-1", content="Due")
    )
    [notice] = await harness.events.wait_for(
        UnreadReminderDue, recipient=client("c2").model_dump(mode="json")
    )
    assert notice["conversation_id"] != taken
    own = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=client("c2"), conversation_id=notice["conversation_id"]
        ),
        ThreadView,
    )
    assert [m.body for m in own.messages] == ["Due"]
    squatter_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id=taken), ThreadView
    )
    assert [m.body for m in squatter_view.messages] == ["Mine now"]
    assert client("c2") not in squatter_view.conversation.participants
    squatter_list = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=team.client), ConversationSummary
    )
    assert notice["conversation_id"] not in {c.conversation_id for c in squatter_list}


async def test_a_request_or_inquiry_under_a_taken_id_still_becomes_its_own_thread(
    harness: Harness, team: Team
) -> None:
    await harness.add_client("c2", primary_clinician_id="dr-primary")
    taken_request = derived_id("appointment-request", "req-taken")
    taken_inquiry = derived_id("inquiry", "inq-taken")
    await take_before_the_rule(harness, team.client, taken_request, taken_inquiry)
    request = AppointmentRequested(
        practice_id=PRACTICE, request_id="req-taken", client_id="c2", details="Thursdays"
    )
    inquiry = InquiryReceived(
        practice_id=PRACTICE,
        inquiry_id="inq-taken",
        client_id="prospect-1",
        display_name="Riley Prospect",
        clinician_id="dr-primary",
        body="Do you take new clients?",
    )
    for event in (request, inquiry, request, inquiry):  # a redelivery finds the same thread
        await harness.amqp.publish(event)
    await harness.handled(AppointmentRequested, count=2)
    await harness.handled(InquiryReceived, count=2)
    threads = harness.database["threads"]
    [requested] = [t async for t in threads.find({"kind": "appointment_request"})]
    [inquired] = [t async for t in threads.find({"kind": "inquiry"})]
    assert requested["conversation_id"] not in (taken_request, taken_inquiry)
    assert requested["client_id"] == "c2"
    assert inquired["conversation_id"] not in (taken_request, taken_inquiry)
    assert inquired["client_id"] == "prospect-1"
    staff_view = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.primary, conversation_id=requested["conversation_id"]
        ),
        ThreadView,
    )
    assert staff_view.request_details == "Thursdays"
    for taken in (taken_request, taken_inquiry):
        squatter_view = await harness.ok(
            GetThread(practice_id=PRACTICE, actor=team.client, conversation_id=taken), ThreadView
        )
        assert [m.body for m in squatter_view.messages] == ["Mine now"]


async def test_opening_with_the_id_of_a_thread_one_cannot_see_answers_not_found(
    harness: Harness, team: Team
) -> None:
    c2 = await harness.add_client("c2", primary_clinician_id="dr-primary")
    await harness.ok(opening(team.client, "private"), ThreadView)
    for outsider, fields in ((c2, {}), (team.stranger_clinician, {"client_id": "c1"})):
        problem = await harness.problem(opening(outsider, "private", **fields))
        missing = await harness.problem(
            GetThread(practice_id=PRACTICE, actor=outsider, conversation_id="no-such-thread")
        )
        assert (problem.code, problem.status, problem.detail) == (
            missing.code,
            missing.status,
            missing.detail,
        )
    again = await harness.ok(opening(team.client, "private"), ThreadView)  # the owner's retry
    assert again.conversation.conversation_id == "private"
