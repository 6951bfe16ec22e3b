"""Inbox views, assignment, archive, mark unread, internal notes, tasks and copying messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sotto_contracts.common import ParticipantRef, StaffRole
from sotto_contracts.conversations import (
    AddNote,
    AssignConversation,
    ConversationAssigned,
    ConversationOpened,
    ConversationSummary,
    CopyMessages,
    CreateTask,
    GetInbox,
    GetThread,
    InboxPage,
    InboxView,
    ListClientConversations,
    MarkRead,
    MarkUnread,
    MessagePosted,
    MessageView,
    NoteAdded,
    NoteView,
    OpenConversation,
    PostMessage,
    SetArchived,
    TaskCreated,
    TaskView,
    TextResult,
    ThreadView,
    UnreadReminderDue,
    UpdateTask,
)
from sotto_contracts.inbound import AppointmentRequested, InquiryReceived
from sotto_kit.mongo import COMMAND_LOG_ENV
from tests.integration.conversations.conftest import (
    PRACTICE,
    Harness,
    Team,
    running_service,
    seed_team,
)
from tests.support.infra import Infrastructure


async def open_with(harness: Harness, team: Team, conversation_id: str, subject: str) -> None:
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id=conversation_id,
            subject=subject,
            client_id="c1",
        ),
        ThreadView,
    )


def post(
    team_member: ParticipantRef, conversation_id: str, message_id: str, body: str
) -> PostMessage:
    return PostMessage(
        practice_id=PRACTICE,
        actor=team_member,
        conversation_id=conversation_id,
        posted_message_id=message_id,
        body=body,
    )


async def opened_by_dr_other(harness: Harness, team: Team, conversation_id: str) -> None:
    """Dr. Other, on Alex's care but not Alex's primary clinician, writes to Alex first."""
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.other_clinician,
            conversation_id=conversation_id,
            subject="Worksheet",
            client_id="c1",
            first_message="Here is the worksheet.",
        ),
        ThreadView,
    )


def assign(
    team_member: ParticipantRef, conversation_id: str, assignee_id: str
) -> AssignConversation:
    return AssignConversation(
        practice_id=PRACTICE,
        actor=team_member,
        conversation_id=conversation_id,
        assignee_id=assignee_id,
    )


def inbox(actor: ParticipantRef, **fields: Any) -> GetInbox:
    return GetInbox(practice_id=PRACTICE, actor=actor, **fields)


def ids(page: InboxPage) -> list[str]:
    return [item.conversation_id for item in page.items]


def logged_commands(log: Path) -> list[dict[str, Any]]:
    """The service's database commands, as `COMMAND_LOG_ENV` wrote them."""
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_reads_by_other_fields_than_the_id_carry_a_time_limit(
    parts: Harness, infra: Infrastructure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox page and its count read the threads by practice (a scan on FerretDB): the
    server is told to stop them at `SCAN_TIME_LIMIT_MS`, or a scan the service gave up on
    under load would run on and pile up with its retries."""
    log = tmp_path / "conversations-commands.jsonl"
    monkeypatch.setenv(COMMAND_LOG_ENV, str(log))
    async with running_service(parts.settings, infra.rabbitmq_url):
        team = await seed_team(parts)
        await open_with(parts, team, "older", "Scheduling")
        await open_with(parts, team, "newer", "Homework")
        await parts.ok(inbox(team.manager, view=InboxView.OTHERS, page_size=1), InboxPage)

    scans = [
        command
        for command in logged_commands(log)
        if command["db"] == parts.settings.database
        and command["command"] in ("find", "aggregate", "findAndModify")
        and "_id" not in command["filter"].split(",")
    ]
    assert {(c["command"], c["collection"]) for c in scans} >= {
        ("aggregate", "threads"),
        ("find", "threads"),
    }
    assert [c for c in scans if not c["time_limited"]] == []


def thread_counts(log: Path, database: str) -> int:
    """How many times the threads were counted (a second scan on FerretDB) since `log` began."""
    return sum(
        1
        for command in logged_commands(log)
        if command["db"] == database
        and (command["command"], command["collection"])
        in {("aggregate", "threads"), ("count", "threads")}
    )


async def test_a_first_inbox_page_that_holds_everything_is_not_counted_again(
    parts: Harness, infra: Infrastructure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting the threads reads them all once more on FerretDB: the total of a first page
    shorter than the page size is its length, and only a longer listing is counted."""
    log = tmp_path / "conversations-commands.jsonl"
    monkeypatch.setenv(COMMAND_LOG_ENV, str(log))
    database = parts.settings.database
    async with running_service(parts.settings, infra.rabbitmq_url):
        team = await seed_team(parts)
        for number in range(3):
            await open_with(parts, team, f"conversation-{number}", f"Subject {number}")

        counted_before = thread_counts(log, database)
        whole = await parts.ok(inbox(team.primary, page_size=5), InboxPage)
        assert (len(whole.items), whole.total) == (3, 3)
        assert thread_counts(log, database) == counted_before

        first = await parts.ok(inbox(team.primary, page_size=2), InboxPage)
        last = await parts.ok(inbox(team.primary, page=2, page_size=2), InboxPage)
        assert (len(first.items), first.total, len(last.items), last.total) == (2, 3, 1, 3)
        assert ids(first) + ids(last) == ids(whole)
        assert thread_counts(log, database) == counted_before + 2

        listed = await parts.ok_list(
            ListClientConversations(practice_id=PRACTICE, actor=team.client), ConversationSummary
        )
        assert len(listed) == 3
        assert thread_counts(log, database) == counted_before + 2


async def test_inbox_views_filters_search_and_paging(harness: Harness, team: Team) -> None:
    await harness.add_client("c9", display_name="Jordan Blake", primary_clinician_id="dr-other")
    await open_with(harness, team, "older", "Scheduling")
    await open_with(harness, team, "newer", "Homework")
    await harness.ok(post(team.client, "older", "m-1", "I feel anxious about Tuesday"), MessageView)
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.other_clinician,
            conversation_id="other-owned",
            subject="Intake",
            client_id="c9",
        ),
        ThreadView,
    )

    mine = await harness.ok(inbox(team.primary), InboxPage)
    assert ids(mine) == ["older", "newer"]
    assert [item.unread for item in mine.items] == [True, False]
    assert ids(await harness.ok(inbox(team.primary, unread_only=True), InboxPage)) == ["older"]
    page_two = await harness.ok(inbox(team.primary, page=2, page_size=1), InboxPage)
    assert (ids(page_two), page_two.total) == (["newer"], 2)
    beyond = await harness.ok(inbox(team.primary, page=10**30, page_size=200), InboxPage)
    assert (ids(beyond), beyond.total) == ([], 2)
    searched = await harness.ok(inbox(team.primary, search="ANXIOUS"), InboxPage)
    assert ids(searched) == ["older"]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert ids(await harness.ok(inbox(team.primary, since=future), InboxPage)) == []
    assert len(ids(await harness.ok(inbox(team.primary, until=future), InboxPage))) == 2

    problem = await harness.problem(inbox(team.primary, view=InboxView.OTHERS))
    assert (problem.code, problem.status) == ("not_permitted", 403)
    others = await harness.ok(inbox(team.manager, view=InboxView.OTHERS), InboxPage)
    assert set(ids(others)) == {"older", "newer", "other-owned"}
    # Others' unread: what their team member has not read yet (the client's message in "older").
    unread_by_team = await harness.ok(
        inbox(team.manager, view=InboxView.OTHERS, unread_only=True), InboxPage
    )
    assert ids(unread_by_team) == ["older"]
    by_name = await harness.ok(
        inbox(team.manager, view=InboxView.OTHERS, search="jordan"), InboxPage
    )
    assert ids(by_name) == ["other-owned"]
    by_assignee = await harness.ok(
        inbox(team.manager, view=InboxView.OTHERS, assignee_id="dr-other"), InboxPage
    )
    assert ids(by_assignee) == ["other-owned"]


async def test_reassigning_moves_the_thread_between_lists(harness: Harness, team: Team) -> None:
    await open_with(harness, team, "conv", "Billing question")
    summary = await harness.ok(
        assign(team.primary, "conv", "biller"),
        ConversationSummary,
    )
    assert summary.assignee_id == "biller"
    assert ids(await harness.ok(inbox(team.primary), InboxPage)) == []
    assert ids(await harness.ok(inbox(team.biller), InboxPage)) == ["conv"]
    # It left the opener, who is no longer told about the client's replies either.
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await harness.ok(post(team.client, "conv", "m-after", "About the invoice"), MessageView)
    await harness.ok(post(team.client, "conv", "m-later", "And the receipt"), MessageView)
    await harness.events.wait_for(MessagePosted, posted_message_id="m-later")  # after reminders
    reminded = harness.events.of(UnreadReminderDue, conversation_id="conv")
    assert {e["recipient"]["id"] for e in reminded} == {"biller"}
    event = await harness.events.wait_for(ConversationAssigned, conversation_id="conv")
    assert event[0]["previous_assignee_id"] == "dr-primary"
    problem = await harness.problem(assign(team.primary, "conv", "dr-stranger"))
    assert (problem.code, problem.status) == ("assignee_without_access", 403)
    problem = await harness.problem(assign(team.primary, "conv", "ghost"))
    assert (problem.code, problem.status) == ("unknown_assignee", 422)


async def test_a_client_writing_into_a_thread_nobody_can_see_reaches_their_primary_clinician(
    harness: Harness, team: Team
) -> None:
    """Dr. Other opened the thread and has since left the practice, recorded without the
    thread being handed on (a crash between the two writes, or data from before the rule):
    Alex's reply goes to Alex's primary clinician, with the thread in their list and a
    reminder."""
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await opened_by_dr_other(harness, team, "orphan")
    await harness.ok(post(team.client, "orphan", "m-seen", "Thanks"), MessageView)
    assert ids(await harness.ok(inbox(team.primary), InboxPage)) == []
    left = await harness.database["people"].update_one(
        {"kind": "staff", "id": "dr-other"}, {"$set": {"active": False}}
    )
    assert left.modified_count == 1

    await harness.ok(post(team.client, "orphan", "m-orphan", "Can we talk?"), MessageView)
    [handed] = await harness.events.wait_for(ConversationAssigned, conversation_id="orphan")
    assert handed["assignee_id"] == "dr-primary"
    assert handed["previous_assignee_id"] == "dr-other"
    assert handed["actor"] is None
    reminded = await harness.events.wait_for(
        UnreadReminderDue, conversation_id="orphan", posted_message_id="m-orphan"
    )
    assert {event["recipient"]["id"] for event in reminded} == {"dr-primary"}
    mine = await harness.ok(inbox(team.primary), InboxPage)
    assert ids(mine) == ["orphan"]
    assert mine.items[0].unread is True

    # Once someone on the team can see it, nothing is handed over again.
    await harness.ok(post(team.client, "orphan", "m-next", "Any time Tuesday"), MessageView)
    await harness.events.wait_for(MessagePosted, posted_message_id="m-next")
    assert len(harness.events.of(ConversationAssigned, conversation_id="orphan")) == 1


async def test_taking_a_clinician_off_a_clients_care_hands_their_threads_on_at_once(
    harness: Harness, team: Team
) -> None:
    """Alex wrote to Dr. Other, who is then taken off Alex's care before reading it: the
    thread goes to Alex's primary clinician straight away, unread and reminded of."""
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await opened_by_dr_other(harness, team, "moved")
    await harness.ok(post(team.client, "moved", "m-unread", "I have a question"), MessageView)
    await harness.add_client(
        "c1", display_name="Alex Rivera", primary_clinician_id="dr-primary", clinician_ids=[]
    )

    [handed] = await harness.events.wait_for(ConversationAssigned, conversation_id="moved")
    assert (handed["assignee_id"], handed["previous_assignee_id"]) == ("dr-primary", "dr-other")
    # Dr. Other's reminder came with the message; Dr. Primary's is scheduled by the handover.
    primary = {"kind": "staff", "id": "dr-primary"}
    await harness.events.wait_for(UnreadReminderDue, conversation_id="moved", recipient=primary)
    reminded = harness.events.of(UnreadReminderDue, conversation_id="moved")
    assert {(e["recipient"]["id"], e["posted_message_id"]) for e in reminded} == {
        ("dr-other", "m-unread"),
        ("dr-primary", "m-unread"),
    }
    mine = await harness.ok(inbox(team.primary), InboxPage)
    assert (ids(mine), [item.unread for item in mine.items]) == (["moved"], [True])
    # An update that leaves the care as it is moves nothing again.
    await harness.add_client(
        "c1", display_name="Alex Rivera", primary_clinician_id="dr-primary", clinician_ids=[]
    )
    await harness.ok(post(team.client, "moved", "m-next", "Any news?"), MessageView)
    await harness.events.wait_for(MessagePosted, posted_message_id="m-next")
    assert len(harness.events.of(ConversationAssigned, conversation_id="moved")) == 1


async def test_a_team_member_leaving_hands_their_client_threads_on_at_once(
    harness: Harness, team: Team
) -> None:
    await open_with(harness, team, "left-behind", "Homework")
    await harness.add_staff("dr-primary", StaffRole.CLINICIAN, active=False)
    [handed] = await harness.events.wait_for(ConversationAssigned, conversation_id="left-behind")
    # Alex's primary clinician is the one who left: a manager takes the thread.
    assert (handed["assignee_id"], handed["previous_assignee_id"]) == ("manager", "dr-primary")
    assert ids(await harness.ok(inbox(team.manager), InboxPage)) == ["left-behind"]


async def test_with_no_clinician_left_on_their_care_a_clients_message_reaches_a_manager(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await open_with(harness, team, "no-clinician", "Scheduling")
    await harness.add_client("c1", display_name="Alex Rivera", clinician_ids=[])

    await harness.ok(post(team.client, "no-clinician", "m-1", "Who do I ask now?"), MessageView)
    [handed] = await harness.events.wait_for(ConversationAssigned, conversation_id="no-clinician")
    assert (handed["assignee_id"], handed["previous_assignee_id"]) == ("manager", "dr-primary")
    reminded = await harness.events.wait_for(
        UnreadReminderDue, conversation_id="no-clinician", posted_message_id="m-1"
    )
    assert {event["recipient"]["id"] for event in reminded} == {"manager"}
    assert ids(await harness.ok(inbox(team.manager), InboxPage)) == ["no-clinician"]


async def test_a_thread_handed_over_unread_reminds_its_new_assignee(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await open_with(harness, team, "unread", "Billing question")
    await harness.ok(post(team.client, "unread", "m-unread", "Is my invoice right?"), MessageView)
    await open_with(harness, team, "read", "Check-in")
    await harness.ok(post(team.client, "read", "m-read", "All good"), MessageView)
    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.primary, conversation_id="read"),
        ConversationSummary,
    )
    for conversation_id in ("unread", "read", "unread"):
        await harness.ok(
            assign(team.primary, conversation_id, "biller"),
            ConversationSummary,
        )

    biller_inbox = await harness.ok(inbox(team.biller), InboxPage)
    assert {item.conversation_id: item.unread for item in biller_inbox.items} == {
        "unread": True,
        "read": False,
    }
    biller = {"kind": "staff", "id": "biller"}
    reminded = await harness.events.wait_for(UnreadReminderDue, recipient=biller)
    assert {(e["conversation_id"], e["posted_message_id"]) for e in reminded} == {
        ("unread", "m-unread")
    }
    assert await harness.database["reminders"].count_documents({"recipient": "staff:biller"}) == 1


async def test_an_inquiry_from_a_prospect_goes_to_a_scheduler_unread(
    harness: Harness, team: Team
) -> None:
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id="inq-nobody",
            client_id="prospect-2",
            display_name="Robin Prospect",
            email="robin@example.org",
            body="Do you have evening slots?",
        )
    )
    opened = await harness.events.wait_for(ConversationOpened, kind="inquiry")
    conversation_id = opened[0]["conversation_id"]
    assigned = await harness.ok(
        assign(team.manager, conversation_id, "scheduler"),
        ConversationSummary,
    )
    assert assigned.assignee_id == "scheduler"
    scheduler_inbox = await harness.ok(inbox(team.scheduler, unread_only=True), InboxPage)
    assert ids(scheduler_inbox) == [conversation_id]
    problem = await harness.problem(assign(team.manager, conversation_id, "dr-stranger"))
    assert (problem.code, problem.status) == ("assignee_without_access", 403)


async def test_an_inquiry_nobody_was_named_for_goes_to_a_practice_lead_unread(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id="inq-unassigned",
            client_id="prospect-3",
            display_name="Casey Prospect",
            body="Do you offer couples sessions?",
        )
    )
    [opened] = await harness.events.wait_for(ConversationOpened, kind="inquiry")
    conversation_id = opened["conversation_id"]
    manager = {"kind": "staff", "id": "manager"}
    reminded = await harness.events.wait_for(
        UnreadReminderDue, conversation_id=conversation_id, recipient=manager
    )
    assert reminded[0]["posted_message_id"]
    unread = await harness.ok(inbox(team.manager, unread_only=True), InboxPage)
    assert ids(unread) == [conversation_id]
    assert unread.items[0].assignee_id == "manager"


async def test_a_request_from_a_client_without_a_primary_clinician_goes_to_a_practice_lead(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await harness.add_client("c-alone", display_name="Jo Alone")
    await harness.amqp.publish(
        AppointmentRequested(
            practice_id=PRACTICE, request_id="req-alone", client_id="c-alone", details="Soon"
        )
    )
    [opened] = await harness.events.wait_for(ConversationOpened, kind="appointment_request")
    conversation_id = opened["conversation_id"]
    manager = {"kind": "staff", "id": "manager"}
    await harness.events.wait_for(
        UnreadReminderDue, conversation_id=conversation_id, recipient=manager
    )
    unread = await harness.ok(inbox(team.manager, unread_only=True), InboxPage)
    assert ids(unread) == [conversation_id]


async def test_handing_a_staff_conversation_over_keeps_its_starter_in_it(
    harness: Harness, team: Team
) -> None:
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="staff-chat",
            subject="Invoice",
            participants=[team.biller],
            first_message="Can you check the invoice?",
        ),
        ThreadView,
    )
    summary = await harness.ok(assign(team.primary, "staff-chat", "biller"), ConversationSummary)
    assert summary.assignee_id == "biller"
    assert {p.id for p in summary.participants} == {"dr-primary", "biller"}
    kept = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="staff-chat"),
        ThreadView,
    )
    assert [m.body for m in kept.messages] == ["Can you check the invoice?"]
    assert ids(await harness.ok(inbox(team.primary), InboxPage)) == ["staff-chat"]
    assert ids(await harness.ok(inbox(team.biller), InboxPage)) == ["staff-chat"]
    await harness.ok(post(team.biller, "staff-chat", "m-answer", "Fixed it"), MessageView)
    primary_inbox = await harness.ok(inbox(team.primary, unread_only=True), InboxPage)
    assert ids(primary_inbox) == ["staff-chat"]


async def test_archive_and_mark_unread(harness: Harness, team: Team) -> None:
    await open_with(harness, team, "conv", "Check-in")
    await harness.ok(post(team.primary, "conv", "m-out", "How are you?"), MessageView)
    problem = await harness.problem(
        MarkUnread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv")
    )
    assert (problem.code, problem.status) == ("no_incoming_message", 409)

    await harness.ok(post(team.client, "conv", "m-in", "Better"), MessageView)
    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"),
        ConversationSummary,
    )
    assert ids(await harness.ok(inbox(team.primary, unread_only=True), InboxPage)) == []
    marked = await harness.ok(
        MarkUnread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"),
        ConversationSummary,
    )
    assert marked.unread
    assert ids(await harness.ok(inbox(team.primary, unread_only=True), InboxPage)) == ["conv"]

    await harness.ok(
        SetArchived(
            practice_id=PRACTICE, actor=team.primary, conversation_id="conv", archived=True
        ),
        ConversationSummary,
    )
    assert ids(await harness.ok(inbox(team.primary), InboxPage)) == []
    assert ids(await harness.ok(inbox(team.primary, archived=True), InboxPage)) == ["conv"]
    problem = await harness.problem(
        SetArchived(practice_id=PRACTICE, actor=team.client, conversation_id="conv", archived=False)
    )
    assert (problem.code, problem.status) == ("staff_only", 403)
    await harness.ok(
        SetArchived(
            practice_id=PRACTICE, actor=team.primary, conversation_id="conv", archived=False
        ),
        ConversationSummary,
    )
    assert ids(await harness.ok(inbox(team.primary), InboxPage)) == ["conv"]


async def test_notes_stay_internal_tasks_and_copy_as_text(harness: Harness, team: Team) -> None:
    await open_with(harness, team, "conv", "Check-in")
    await harness.ok(post(team.primary, "conv", "m-1", "First :smile:"), MessageView)
    await harness.ok(post(team.client, "conv", "m-2", "Second"), MessageView)
    await harness.ok(post(team.primary, "conv", "m-3", "Third"), MessageView)
    note = await harness.ok(
        AddNote(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            note_id="n-1",
            body="Consider a safety plan",
        ),
        NoteView,
    )
    assert note.author_id == "dr-primary"
    problem = await harness.problem(
        AddNote(
            practice_id=PRACTICE, actor=team.client, conversation_id="conv", note_id="n-2", body="x"
        )
    )
    assert (problem.code, problem.status) == ("staff_only", 403)

    task = await harness.ok(
        CreateTask(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            task_id="t-1",
            title="Send worksheet",
            assignee_id="dr-other",
            due=datetime(2026, 12, 1, tzinfo=UTC).date(),
        ),
        TaskView,
    )
    assert (task.assignee_id, task.done) == ("dr-other", False)
    done = await harness.ok(
        UpdateTask(practice_id=PRACTICE, actor=team.primary, task_id="t-1", done=True), TaskView
    )
    assert done.done
    assert done.conversation_id == "conv"

    staff_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"), ThreadView
    )
    assert [n.body for n in staff_view.notes] == ["Consider a safety plan"]
    assert [t.task_id for t in staff_view.tasks] == ["t-1"]
    client_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id="conv"), ThreadView
    )
    assert client_view.notes == []
    assert client_view.tasks == []
    assert "safety plan" not in client_view.model_dump_json()
    await harness.events.wait_for(NoteAdded, note_id="n-1")
    await harness.events.wait_for(TaskCreated, task_id="t-1")
    assert "safety plan" not in str(harness.events.received)

    copied = await harness.ok(
        CopyMessages(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            posted_message_ids=["m-1", "m-3"],
        ),
        TextResult,
    )
    lines = copied.text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("Staff dr-primary: First 😄")
    assert lines[1].endswith("Staff dr-primary: Third")
    _ = StaffRole
