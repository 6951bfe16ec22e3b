"""Practice-system events: projection, appointment requests, inquiries, client-email workflows."""

from __future__ import annotations

import httpx

from sotto_contracts.common import ClientEmailWorkflow, ParticipantRef
from sotto_contracts.conversations import (
    AssignConversation,
    ClientEmailDue,
    ConversationKind,
    ConversationOpened,
    ConversationSummary,
    GetInbox,
    GetThread,
    InboxPage,
    ListClientConversations,
    MarkRead,
    MessagePosted,
    MessageView,
    PostMessage,
    ThreadView,
    UnreadReminderDue,
)
from sotto_contracts.inbound import (
    CLIENT_EMAIL_WORKFLOW_EVENTS,
    AppointmentRequested,
    InquiryReceived,
    InquiryResponse,
    StatementReady,
)
from sotto_conversations.domain import key_of
from sotto_conversations.main import create_app
from tests.integration.conversations.conftest import (
    PRACTICE,
    Harness,
    Team,
    seed_team,
    wait_until_consuming,
)
from tests.support.infra import Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually


def practice_message_ids(harness: Harness) -> set[str]:
    """Event ids of messages the practice posted (relays may repeat an event: same id)."""
    return {e["message_id"] for e in harness.events.of(MessagePosted) if e["actor"] is None}


async def test_projection_keeps_no_emails_or_dates_of_birth(harness: Harness, team: Team) -> None:
    stored = [document async for document in harness.database["people"].find()]
    assert {document["id"] for document in stored} >= {"c1", "dr-primary", "owner"}
    text = str(stored)
    assert "@example.org" not in text
    assert "date_of_birth" not in text
    client = next(document for document in stored if document["id"] == "c1")
    assert client["primary_clinician_id"] == "dr-primary"
    assert client["contacts"][0]["relation"] == "partner"


async def test_appointment_request_opens_a_staff_visible_request(
    harness: Harness, team: Team
) -> None:
    request = AppointmentRequested(
        practice_id=PRACTICE,
        request_id="req-1",
        client_id="c1",
        details="Prefers Tuesday mornings",
    )
    await harness.amqp.publish(request)
    await harness.amqp.publish(request)
    opened = await harness.events.wait_for(ConversationOpened, kind="appointment_request")
    conversation_id = opened[0]["conversation_id"]
    staff_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id=conversation_id),
        ThreadView,
    )
    assert staff_view.conversation.kind == ConversationKind.APPOINTMENT_REQUEST
    assert staff_view.request_details == "Prefers Tuesday mornings"
    assert staff_view.conversation.unread
    client_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id=conversation_id),
        ThreadView,
    )
    assert client_view.request_details is None
    assert "Tuesday" not in str(harness.events.received)
    inbox = await harness.ok(GetInbox(practice_id=PRACTICE, actor=team.primary), InboxPage)
    assert [item.conversation_id for item in inbox.items] == [conversation_id]
    opened_ids = {e["message_id"] for e in harness.events.of(ConversationOpened)}
    assert len(opened_ids) == 1


async def test_the_assignee_is_reminded_of_a_request_until_they_open_it(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    first = AppointmentRequested(
        practice_id=PRACTICE, request_id="req-seen", client_id="c1", details="Mondays"
    )
    await harness.amqp.publish(first)
    await harness.amqp.publish(first)
    opened = await harness.events.wait_for(ConversationOpened, kind="appointment_request")
    first_id = opened[0]["conversation_id"]
    reminded = await harness.events.wait_for(UnreadReminderDue, conversation_id=first_id)
    assert reminded[0]["recipient"] == {"kind": "staff", "id": "dr-primary"}

    await harness.configure(team.owner, staff_notification_delay_seconds=3600)
    await harness.amqp.publish(
        AppointmentRequested(
            practice_id=PRACTICE, request_id="req-later", client_id="c1", details="Fridays"
        )
    )

    async def second_request() -> set[str]:
        ids = {e["conversation_id"] for e in harness.events.of(ConversationOpened)}
        return ids - {first_id}

    (second_id,) = await eventually(second_request, until=bool, what="second request")
    reminders = harness.database["reminders"]
    waiting = {"conversation_id": second_id, "state": "pending"}
    await eventually(lambda: reminders.count_documents(waiting), until=lambda n: n == 1)
    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.primary, conversation_id=second_id),
        ConversationSummary,
    )
    assert await reminders.count_documents(waiting) == 0
    once = {e["message_id"] for e in harness.events.of(UnreadReminderDue)}
    assert len(once) == 1
    assert "Mondays" not in str(harness.events.received)


async def test_a_request_handed_over_unopened_reminds_the_new_assignee_instead(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=3600)
    await harness.amqp.publish(
        AppointmentRequested(
            practice_id=PRACTICE, request_id="req-handed", client_id="c1", details="Evenings"
        )
    )
    opened = await harness.events.wait_for(ConversationOpened, kind="appointment_request")
    conversation_id = opened[0]["conversation_id"]
    reminders = harness.database["reminders"]

    async def pending() -> list[str]:
        waiting = {"conversation_id": conversation_id, "state": "pending"}
        return sorted([document["recipient"] async for document in reminders.find(waiting)])

    assert await eventually(pending, until=bool) == ["staff:dr-primary"]
    await harness.ok(
        AssignConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id=conversation_id,
            assignee_id="scheduler",
        ),
        ConversationSummary,
    )
    assert await pending() == ["staff:scheduler"]
    scheduler_inbox = await harness.ok(
        GetInbox(practice_id=PRACTICE, actor=team.scheduler, unread_only=True), InboxPage
    )
    assert [item.conversation_id for item in scheduler_inbox.items] == [conversation_id]


async def test_inquiry_becomes_a_standard_conversation(harness: Harness, team: Team) -> None:
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id="inq-1",
            client_id="prospect-1",
            display_name="Riley Prospect",
            email="riley@example.org",
            clinician_id="dr-primary",
            body="Do you take new clients?",
        )
    )
    opened = await harness.events.wait_for(ConversationOpened, kind="inquiry")
    thread = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.primary, conversation_id=opened[0]["conversation_id"]
        ),
        ThreadView,
    )
    assert thread.conversation.client_name == "Riley Prospect"
    assert [m.body for m in thread.messages] == ["Do you take new clients?"]
    assert "riley@example.org" not in str(await harness.database["threads"].find_one())


async def test_workflow_through_the_portal_one_message_and_notice_per_person_and_event(
    harness: Harness, team: Team
) -> None:
    for workflow_type in CLIENT_EMAIL_WORKFLOW_EVENTS:
        event = workflow_type(
            practice_id=PRACTICE,
            client_id="c1",
            recipients=[team.client, team.partner],
            reference_id=f"ref-{workflow_type.WORKFLOW.value}",
            content=f"Details for {workflow_type.WORKFLOW.value}",
        )
        await harness.amqp.publish(event)
        await harness.amqp.publish(event)

    async def posted() -> int:
        return len(practice_message_ids(harness))

    await eventually(posted, until=lambda n: n >= 16, what="16 portal messages")

    async def notices() -> dict[str, tuple[str, str]]:
        return {
            r["message_id"]: (r["recipient"]["id"], r["posted_message_id"])
            for r in harness.events.of(UnreadReminderDue)
        }

    # None read yet, and still every workflow is an email of its own to each person.
    found = await eventually(notices, until=lambda found: len(found) >= 16, what="16 notices")
    assert sorted(recipient for recipient, _ in found.values()) == ["c1"] * 8 + ["c1-partner"] * 8
    assert len({posted for _, posted in found.values()}) == 16

    # Each has their own thread of notices, with their own copy of each.
    client_view, partner_view = [
        await harness.ok(
            GetThread(
                practice_id=PRACTICE,
                actor=reader,
                conversation_id=await notices_of(harness, reader),
            ),
            ThreadView,
        )
        for reader in (team.client, team.partner)
    ]
    assert client_view.conversation.conversation_id != partner_view.conversation.conversation_id
    assert len(client_view.messages) == len(partner_view.messages) == 8
    assert client_view.messages[0].body == "Details for appointment_reminder"
    assert client_view.messages[0].sender is None
    mine = {posted for recipient, posted in found.values() if recipient == "c1"}
    assert {m.message_id for m in client_view.messages} == mine
    assert not {m.message_id for m in partner_view.messages} & mine
    for view in (client_view, partner_view):
        staff_view = await harness.ok(
            GetThread(
                practice_id=PRACTICE,
                actor=team.primary,
                conversation_id=view.conversation.conversation_id,
            ),
            ThreadView,
        )
        assert len(staff_view.messages) == 8
    assert "Details for" not in str(harness.events.received)
    assert len(practice_message_ids(harness)) == 16


async def notices_of(harness: Harness, reader: ParticipantRef) -> str:
    """The id of the one conversation `reader` takes part in: their notices."""
    [conversation] = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=reader), ConversationSummary
    )
    return conversation.conversation_id


async def test_what_a_client_writes_back_to_a_notice_reaches_the_team_not_their_partner(
    harness: Harness, team: Team
) -> None:
    await harness.configure(
        team.owner, client_notification_delay_seconds=0, staff_notification_delay_seconds=0
    )
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE,
            client_id="c1",
            recipients=[team.client, team.partner],
            reference_id="joint",
            content="Your statement",
        )
    )
    await harness.events.wait_for(UnreadReminderDue, count=2)
    client_thread = await notices_of(harness, team.client)
    partner_thread = await notices_of(harness, team.partner)
    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.partner, conversation_id=partner_thread),
        ConversationSummary,
    )

    def post(
        actor: ParticipantRef, conversation_id: str, message_id: str, body: str
    ) -> PostMessage:
        return PostMessage(
            practice_id=PRACTICE,
            actor=actor,
            conversation_id=conversation_id,
            posted_message_id=message_id,
            body=body,
        )

    await harness.ok(
        post(team.client, client_thread, "from-client", "Can I pay later?"), MessageView
    )
    await harness.ok(post(team.primary, client_thread, "to-client", "Yes, Alex"), MessageView)
    await harness.ok(post(team.partner, partner_thread, "from-partner", "Is it mine?"), MessageView)
    # the team is reminded of both replies, each in its own thread
    for conversation_id, posted in (
        (client_thread, "from-client"),
        (partner_thread, "from-partner"),
    ):
        await harness.events.wait_for(
            UnreadReminderDue, conversation_id=conversation_id, posted_message_id=posted
        )

    partner_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.partner, conversation_id=partner_thread),
        ThreadView,
    )
    assert [m.body for m in partner_view.messages] == ["Your statement", "Is it mine?"]
    assert not partner_view.conversation.unread
    assert {key_of(p) for p in partner_view.conversation.participants} == {"contact:c1-partner"}
    client_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id=client_thread),
        ThreadView,
    )
    assert [m.body for m in client_view.messages] == [
        "Your statement",
        "Can I pay later?",
        "Yes, Alex",
    ]
    reminded = {
        (e["recipient"]["id"], e["posted_message_id"]) for e in harness.events.of(UnreadReminderDue)
    }
    assert ("c1-partner", "from-client") not in reminded
    assert ("c1-partner", "to-client") not in reminded
    assert ("c1", "from-partner") not in reminded
    assert ("c1", "to-client") in reminded
    assert (
        await harness.database["reminders"].count_documents(
            {
                "recipient": "contact:c1-partner",
                "posted_message_id": {"$in": ["from-client", "to-client"]},
            }
        )
        == 0
    )
    staff_inbox = await harness.ok(
        GetInbox(practice_id=PRACTICE, actor=team.primary, unread_only=True), InboxPage
    )
    assert {item.conversation_id for item in staff_inbox.items} == {partner_thread}


async def test_a_notice_for_the_client_alone_stays_out_of_the_partners_view(
    harness: Harness, team: Team
) -> None:
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE,
            client_id="c1",
            recipients=[team.client, team.partner],
            reference_id="joint",
        )
    )
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE, client_id="c1", recipients=[team.client], reference_id="own"
        )
    )
    await harness.events.wait_for(UnreadReminderDue, count=3)
    conversations = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=team.partner), ConversationSummary
    )
    partner_view = await harness.ok(
        GetThread(
            practice_id=PRACTICE,
            actor=team.partner,
            conversation_id=conversations[0].conversation_id,
        ),
        ThreadView,
    )
    assert len(partner_view.messages) == 1


async def test_a_recipient_who_cannot_use_the_portal_gets_the_ordinary_email(
    harness: Harness, team: Team
) -> None:
    await harness.add_client("c2", messaging_enabled=False)
    await harness.amqp.publish(
        StatementReady(practice_id=PRACTICE, client_id="c2", reference_id="stmt-c2")
    )
    due = await harness.events.wait_for(ClientEmailDue)
    assert due[0]["recipient"]["id"] == "c2"
    assert not [e for e in harness.events.of(UnreadReminderDue) if e["recipient"]["id"] == "c2"]


async def test_workflow_with_routing_off_records_history_and_asks_for_emails(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, route_client_emails_through_portal=False)
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE,
            client_id="c1",
            recipients=[team.client, team.partner],
            reference_id="stmt-9",
            content="Balance 120.00",
        )
    )
    due = await harness.events.wait_for(ClientEmailDue, count=2)
    assert {e["recipient"]["id"] for e in due} == {"c1", "c1-partner"}
    assert {e["workflow"] for e in due} == {ClientEmailWorkflow.STATEMENT_READY.value}
    assert "Balance" not in str(due)
    staff_view = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.primary, conversation_id=due[0]["conversation_id"]
        ),
        ThreadView,
    )
    assert staff_view.messages == []
    assert "stmt-9" in staff_view.notes[0].body
    assert "Balance 120.00" in staff_view.notes[0].body
    client_view = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.client, conversation_id=due[0]["conversation_id"]
        ),
        ThreadView,
    )
    assert client_view.notes == []


async def test_a_person_named_twice_gets_one_email(harness: Harness, team: Team) -> None:
    await harness.configure(team.owner, route_client_emails_through_portal=False)
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE,
            client_id="c1",
            recipients=[team.client, team.partner, team.client],
            reference_id="stmt-twice",
        )
    )
    await harness.handled(StatementReady)
    # published before the handler returned: a later event comes after them
    await harness.amqp.publish(
        StatementReady(practice_id=PRACTICE, client_id="c1", reference_id="stmt-after")
    )
    await harness.events.wait_for(ClientEmailDue, reference_id="stmt-after")
    due = harness.events.of(ClientEmailDue, reference_id="stmt-twice")
    assert [e["recipient"]["id"] for e in due] in (["c1", "c1-partner"], ["c1-partner", "c1"])
    staff_view = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.primary, conversation_id=due[0]["conversation_id"]
        ),
        ThreadView,
    )
    assert "to client:c1, contact:c1-partner." in staff_view.notes[0].body


async def test_unknown_practice_client_or_recipient_is_parked(harness: Harness, team: Team) -> None:
    await harness.amqp.publish(
        AppointmentRequested(practice_id="ghost-practice", request_id="r", client_id="c1")
    )
    await harness.amqp.publish(
        StatementReady(practice_id=PRACTICE, client_id="ghost-client", reference_id="s")
    )
    await harness.amqp.publish(
        StatementReady(
            practice_id=PRACTICE,
            client_id="c1",
            reference_id="s",
            recipients=[team.primary],
        )
    )
    await harness.amqp.publish_raw(
        b'{"practice_id": "practice-1"}',
        exchange=harness.amqp.topology.inbound.name,
        routing_key=InquiryReceived.ROUTING_KEY,
    )
    parked = await eventually(
        lambda: harness.amqp.parked("conversations"), until=lambda items: len(items) >= 4
    )
    reasons = " | ".join(item.reason for item in parked)
    assert "unknown practice ghost-practice" in reasons
    assert "unknown client ghost-client" in reasons
    assert "does not belong to the client" in reasons
    assert "invalid message" in reasons
    assert "(after 5 deliveries)" in reasons


async def test_an_event_that_overtakes_its_clients_projection_waits_for_it(
    parts: Harness, infra: Infrastructure
) -> None:
    """A practice system publishes a new client and their statement back to back; the
    statement may be handled first (concurrent consumers). It is retried, not parked."""
    harness = parts
    async with serve(create_app(harness.settings)) as url, httpx.AsyncClient() as http:
        await wait_until_consuming(infra.rabbitmq_url, harness.settings.topology)
        await seed_team(harness)
        await harness.amqp.publish(
            StatementReady(practice_id=PRACTICE, client_id="c-late", reference_id="first")
        )

        async def retried() -> int:
            stats = (await http.get(f"{url}/health")).json()["messages"]
            return int(stats["retried"].get(StatementReady.ROUTING_KEY, 0))

        await eventually(retried, until=lambda count: count >= 1, what="a retry")
        await harness.add_client("c-late")
        notice = await harness.events.wait_for(UnreadReminderDue)
        assert notice[0]["recipient"]["id"] == "c-late"
        assert await harness.amqp.parked("conversations") == []


async def test_a_prospect_is_answered_by_email_not_by_secure_message(
    harness: Harness, team: Team
) -> None:
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id="inq-9",
            client_id="prospect-9",
            display_name="Riley Prospect",
            email="riley@example.org",
            clinician_id="dr-primary",
            body="Do you see teenagers?",
        )
    )
    [opened] = await harness.events.wait_for(ConversationOpened, kind="inquiry")
    conversation_id = opened["conversation_id"]
    problem = await harness.problem(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id=conversation_id,
            posted_message_id="reply-1",
            body="Yes, we do.",
        )
    )
    assert (problem.code, problem.status) == ("prospect_not_client", 409)

    await harness.amqp.publish(
        InquiryResponse(practice_id=PRACTICE, client_id="prospect-9", reference_id="resp-1")
    )
    [due] = await harness.events.wait_for(ClientEmailDue)
    assert due["recipient"] == {"kind": "client", "id": "prospect-9"}
    assert due["conversation_id"] == conversation_id
    staff_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id=conversation_id),
        ThreadView,
    )
    assert "inquiry_response" in staff_view.notes[0].body
    assert await harness.amqp.parked("conversations") == []
