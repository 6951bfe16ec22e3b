"""Who may message whom (DESIGN.md section 5): every rule's acceptance and its typed refusal."""

from __future__ import annotations

from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_contracts.conversations import (
    CreateTask,
    GetInbox,
    GetThread,
    InboxPage,
    ListClientConversations,
    MessageView,
    OpenConversation,
    PostMessage,
    SetMessagingEnabled,
    TaskView,
    ThreadView,
    UnreadReminderDue,
    UpdateTask,
)
from sotto_contracts.inbound import AppointmentRequested
from tests.integration.conversations.conftest import PRACTICE, Harness, Team, staff


def opening(actor: ParticipantRef, conversation_id: str, **fields: object) -> OpenConversation:
    return OpenConversation.model_validate(
        {
            "practice_id": PRACTICE,
            "actor": actor,
            "conversation_id": conversation_id,
            "subject": "Hello",
            **fields,
        }
    )


def switching(actor: ParticipantRef, subject: ParticipantRef, enabled: bool) -> SetMessagingEnabled:
    return SetMessagingEnabled(practice_id=PRACTICE, actor=actor, subject=subject, enabled=enabled)


async def refused(harness: Harness, request: object, code: str, status: int) -> None:
    problem = await harness.problem(request)  # type: ignore[arg-type]
    assert (problem.code, problem.status) == (code, status), problem


async def test_client_starts_only_with_primary_clinician_managers_billers_schedulers(
    harness: Harness, team: Team
) -> None:
    opened = await harness.ok(opening(team.client, "with-primary"), ThreadView)
    assert opened.conversation.assignee_id == "dr-primary"
    for allowed in (team.manager, team.biller, team.scheduler):
        await harness.ok(
            opening(team.client, f"with-{allowed.id}", participants=[allowed]), ThreadView
        )
    for forbidden in (team.other_clinician, team.supervisor, team.stranger_clinician):
        await refused(
            harness,
            opening(team.client, f"with-{forbidden.id}", participants=[forbidden]),
            "client_may_not_start_with_staff",
            403,
        )
    await refused(harness, opening(team.partner, "by-contact"), "contact_may_not_start", 403)


async def test_other_clinician_with_access_may_start_and_the_client_may_reply(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.other_clinician, "from-other", client_id="c1"), ThreadView)
    reply = PostMessage(
        practice_id=PRACTICE,
        actor=team.client,
        conversation_id="from-other",
        posted_message_id="reply-1",
        body="Thanks",
    )
    assert (await harness.ok(reply, MessageView)).sender == team.client
    await refused(
        harness,
        opening(team.stranger_clinician, "from-stranger", client_id="c1"),
        "no_client_access",
        403,
    )


async def test_billers_and_schedulers_any_client_supervisors_only_with_access(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.biller, "biller", client_id="c1"), ThreadView)
    await harness.ok(opening(team.scheduler, "scheduler", client_id="c1"), ThreadView)
    await refused(
        harness,
        opening(team.supervisor, "supervisor", client_id="c1"),
        "supervisor_without_access",
        403,
    )
    await harness.add_staff("supervisor", StaffRole.SUPERVISOR, client_ids=["c1"])
    await harness.ok(opening(team.supervisor, "supervisor", client_id="c1"), ThreadView)


async def test_staff_to_staff_conversations(harness: Harness, team: Team) -> None:
    opened = await harness.ok(
        opening(team.primary, "staff-chat", participants=[team.biller], first_message="Invoice?"),
        ThreadView,
    )
    assert opened.conversation.client_id is None
    await refused(
        harness,
        opening(team.primary, "bad-staff-chat", participants=[team.partner]),
        "staff_conversation_participants",
        422,
    )
    await refused(
        harness,
        opening(team.primary, "ghost-chat", participants=[staff("nobody")]),
        "unknown_participant",
        422,
    )


async def test_practice_staff_and_client_enablement(harness: Harness, team: Team) -> None:
    await refused(harness, switching(team.primary, team.client, False), "not_permitted", 403)

    await harness.ok_none(switching(team.owner, team.client, False))
    await refused(
        harness, opening(team.primary, "c-off", client_id="c1"), "client_messaging_disabled", 403
    )
    await refused(harness, opening(team.client, "c-off-2"), "client_messaging_disabled", 403)

    await harness.ok_none(switching(team.owner, team.primary, False))
    await harness.ok_none(switching(team.owner, team.other_clinician, False))
    await refused(harness, switching(team.owner, team.client, True), "team_member_not_enabled", 409)
    await harness.ok_none(switching(team.owner, team.primary, True))
    await harness.ok_none(switching(team.owner, team.client, True))

    await harness.ok_none(switching(team.owner, team.other_clinician, False))
    await refused(
        harness,
        opening(team.other_clinician, "s-off", client_id="c1"),
        "staff_messaging_disabled",
        403,
    )

    await harness.configure(team.owner, secure_messaging_enabled=False)
    await refused(
        harness, opening(team.primary, "p-off", client_id="c1"), "practice_messaging_disabled", 403
    )


async def test_new_clients_follow_the_auto_enable_setting(harness: Harness, team: Team) -> None:
    await harness.configure(team.owner, auto_enable_new_clients=False)
    await harness.add_client("c-new", primary_clinician_id="dr-primary")
    new_client = ParticipantRef(kind=ParticipantKind.CLIENT, id="c-new")
    await refused(harness, opening(new_client, "new-1"), "client_messaging_disabled", 403)
    await harness.ok_none(switching(team.owner, new_client, True))
    await harness.ok(opening(new_client, "new-1"), ThreadView)

    await harness.configure(team.owner, auto_enable_new_clients=True)
    await harness.add_client("c-auto", primary_clinician_id="dr-primary")
    auto_client = ParticipantRef(kind=ParticipantKind.CLIENT, id="c-auto")
    await harness.ok(opening(auto_client, "auto-1"), ThreadView)


async def test_a_clinician_taken_off_a_clients_care_loses_the_clients_threads_and_tasks(
    harness: Harness, team: Team
) -> None:
    await harness.ok(opening(team.other_clinician, "care", client_id="c1"), ThreadView)
    await harness.ok(
        CreateTask(
            practice_id=PRACTICE,
            actor=team.other_clinician,
            conversation_id="care",
            task_id="t-care",
            title="Call back",
        ),
        TaskView,
    )
    await harness.add_client(
        "c1", display_name="Alex Rivera", primary_clinician_id="dr-primary", clinician_ids=[]
    )

    for request in (
        GetThread(practice_id=PRACTICE, actor=team.other_clinician, conversation_id="care"),
        UpdateTask(practice_id=PRACTICE, actor=team.other_clinician, task_id="t-care", done=True),
        PostMessage(
            practice_id=PRACTICE,
            actor=team.other_clinician,
            conversation_id="care",
            posted_message_id="after-removal",
            body="Still here?",
        ),
    ):
        problem = await harness.problem(request)
        assert problem.status == 404, (request, problem)

    seen_by_primary = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="care"), ThreadView
    )
    assert [(task.task_id, task.done) for task in seen_by_primary.tasks] == [("t-care", False)]
    assert seen_by_primary.messages == []

    # Not in their list any more, and the client's reply does not email them about it.
    mine = await harness.ok(GetInbox(practice_id=PRACTICE, actor=team.other_clinician), InboxPage)
    assert mine.items == []
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.client,
            conversation_id="care",
            posted_message_id="client-reply",
            body="Thanks",
        ),
        MessageView,
    )
    await harness.ok(opening(team.primary, "marker", client_id="c1"), ThreadView)
    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.client,
            conversation_id="marker",
            posted_message_id="marker-reply",
            body="Marker",
        ),
        MessageView,
    )
    await harness.events.wait_for(UnreadReminderDue, conversation_id="marker")
    reminded = {e["recipient"]["id"] for e in harness.events.of(UnreadReminderDue)}
    assert "dr-other" not in reminded


async def test_with_messaging_off_for_the_practice_clients_read_nothing_and_nobody_is_reminded(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=3600)
    await harness.ok(opening(team.client, "before", first_message="Hello"), ThreadView)
    reminders = harness.database["reminders"]
    assert await reminders.count_documents({"recipient": "staff:dr-primary"}) == 1

    await harness.configure(team.owner, secure_messaging_enabled=False)
    for reader in (team.client, team.partner):
        await refused(
            harness,
            GetThread(practice_id=PRACTICE, actor=reader, conversation_id="before"),
            "practice_messaging_disabled",
            403,
        )
        await refused(
            harness,
            ListClientConversations(practice_id=PRACTICE, actor=reader),
            "practice_messaging_disabled",
            403,
        )
    assert await reminders.count_documents({"state": "pending"}) == 0
    await harness.amqp.publish(
        AppointmentRequested(practice_id=PRACTICE, request_id="req-off", client_id="c1")
    )
    await harness.handled(AppointmentRequested)
    assert await harness.database["threads"].count_documents({"kind": "appointment_request"}) == 1
    assert await reminders.count_documents({}) == 0
    staff_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="before"), ThreadView
    )
    assert [m.body for m in staff_view.messages] == ["Hello"]  # the team still reads
