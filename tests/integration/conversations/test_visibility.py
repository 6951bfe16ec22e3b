"""What a team member learns of threads they may not see (clients outside their care): nothing,
whether through an inbox's pages and totals, a transcript or tasks; and client names in the
inbox follow the practice system's renames."""

from __future__ import annotations

from sotto_contracts.common import StaffRole
from sotto_contracts.conversations import (
    ConversationOpened,
    CreateTask,
    GetInbox,
    GetThread,
    GetTranscript,
    InboxPage,
    InboxView,
    OpenConversation,
    TaskView,
    TextResult,
    ThreadView,
    UpdateTask,
)
from sotto_contracts.inbound import InquiryReceived
from tests.integration.conversations.conftest import PRACTICE, Harness, Team, staff


async def open_for(harness: Harness, conversation_id: str, client_id: str, by: str) -> None:
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=staff(by),
            conversation_id=conversation_id,
            subject="Check-in",
            client_id=client_id,
        ),
        ThreadView,
    )


async def inquiry(harness: Harness, inquiry_id: str, client_id: str, name: str) -> str:
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id=inquiry_id,
            client_id=client_id,
            display_name=name,
            clinician_id="dr-primary",
            body="Hello",
        )
    )
    opened = await harness.events.wait_for(ConversationOpened, kind="inquiry", client_id=client_id)
    return str(opened[0]["conversation_id"])


def ids(page: InboxPage) -> list[str]:
    return [item.conversation_id for item in page.items]


async def test_an_inbox_counts_and_pages_only_the_threads_its_reader_may_see(
    harness: Harness, team: Team
) -> None:
    await harness.add_staff(
        "dr-sup", StaffRole.SUPERVISOR, can_view_others_conversations=True, client_ids=["m1", "m3"]
    )
    for number in range(1, 5):
        await harness.add_client(
            f"m{number}", display_name=f"Morgan {number}", primary_clinician_id="dr-primary"
        )
        await open_for(harness, f"morgan-{number}", f"m{number}", by="dr-primary")
    # a prospect's inquiry is for anyone who may view others; one from a client off their
    # care is not
    prospect = await inquiry(harness, "inq-prospect", "prospect-m", "Morgan Prospect")
    await inquiry(harness, "inq-m4", "m4", "Morgan 4")

    visible = [prospect, "morgan-3", "morgan-1"]
    for view in (InboxView.ALL, InboxView.OTHERS):
        for page in range(1, 5):
            listed = await harness.ok(
                GetInbox(
                    practice_id=PRACTICE,
                    actor=staff("dr-sup"),
                    view=view,
                    search="morgan",
                    page=page,
                    page_size=1,
                ),
                InboxPage,
            )
            assert (ids(listed), listed.total) == (visible[page - 1 : page], 3), (view, page)
        whole = await harness.ok(
            GetInbox(practice_id=PRACTICE, actor=staff("dr-sup"), view=view, search="morgan"),
            InboxPage,
        )
        assert (ids(whole), whole.total) == (visible, 3)

    everything = await harness.ok(
        GetInbox(practice_id=PRACTICE, actor=team.manager, view=InboxView.ALL, search="morgan"),
        InboxPage,
    )
    assert everything.total == 6


async def test_a_clinicians_own_list_leaves_out_clients_taken_off_their_care(
    harness: Harness, team: Team
) -> None:
    await harness.add_client("m1", display_name="Morgan 1", primary_clinician_id="dr-other")
    await harness.add_client(
        "m2", display_name="Morgan 2", primary_clinician_id="dr-primary", clinician_ids=["dr-other"]
    )
    await open_for(harness, "kept", "m1", by="dr-other")
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="lost",
            subject="Together",
            client_id="m2",
            participants=[team.other_clinician],
        ),
        ThreadView,
    )
    # Dr. Other still takes part in "lost", but it is no longer theirs to see.
    await harness.add_client("m2", display_name="Morgan 2", primary_clinician_id="dr-primary")

    for page, expected in ((1, ["kept"]), (2, [])):
        mine = await harness.ok(
            GetInbox(practice_id=PRACTICE, actor=team.other_clinician, page=page, page_size=1),
            InboxPage,
        )
        assert (ids(mine), mine.total) == (expected, 1)


async def test_a_renamed_client_is_found_by_the_new_name_in_older_threads(
    harness: Harness, team: Team
) -> None:
    await open_for(harness, "before-rename", "c1", by="dr-primary")
    await harness.add_client(
        "c1",
        display_name="Alex Moreno",
        primary_clinician_id="dr-primary",
        clinician_ids=["dr-other"],
    )

    found = await harness.ok(
        GetInbox(practice_id=PRACTICE, actor=team.primary, search="moreno"), InboxPage
    )
    assert ids(found) == ["before-rename"]
    assert found.items[0].client_name == "Alex Moreno"
    old = await harness.ok(
        GetInbox(practice_id=PRACTICE, actor=team.primary, search="rivera"), InboxPage
    )
    assert ids(old) == []
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="before-rename"),
        ThreadView,
    )
    assert thread.conversation.client_name == "Alex Moreno"


async def test_a_transcript_needs_the_client_on_the_readers_care(
    harness: Harness, team: Team
) -> None:
    await open_for(harness, "history", "c1", by="dr-primary")
    request = GetTranscript(practice_id=PRACTICE, actor=team.supervisor, client_id="c1")

    await harness.add_staff("supervisor", StaffRole.SUPERVISOR, can_view_others_conversations=True)
    problem = await harness.problem(request)
    assert (problem.code, problem.status) == ("not_found", 404)

    await harness.add_staff(
        "supervisor", StaffRole.SUPERVISOR, can_view_others_conversations=True, client_ids=["c1"]
    )
    transcript = await harness.ok(request, TextResult)
    assert "Conversation history: Check-in" in transcript.text


def task(actor: str, conversation_id: str, task_id: str, **fields: object) -> CreateTask:
    return CreateTask.model_validate(
        {
            "practice_id": PRACTICE,
            "actor": staff(actor),
            "conversation_id": conversation_id,
            "task_id": task_id,
            "title": "Call back",
            **fields,
        }
    )


def task_update(actor: str, task_id: str, **fields: object) -> UpdateTask:
    return UpdateTask.model_validate(
        {"practice_id": PRACTICE, "actor": staff(actor), "task_id": task_id, **fields}
    )


async def test_a_task_in_a_thread_one_cannot_see_answers_as_if_there_were_none(
    harness: Harness, team: Team
) -> None:
    await open_for(harness, "hidden", "c1", by="dr-primary")
    await harness.ok(task("dr-primary", "hidden", "t-1"), TaskView)

    for fields in ({"done": True}, {"assignee_id": "nobody"}):
        unknown = await harness.problem(task_update("dr-stranger", "t-nowhere", **fields))
        hidden = await harness.problem(task_update("dr-stranger", "t-1", **fields))
        assert (hidden.code, hidden.status, hidden.detail) == (
            unknown.code,
            unknown.status,
            unknown.detail,
        )
        assert (hidden.code, hidden.status) == ("not_found", 404)

    # nor does it keep them from using the id in a thread of their own
    await harness.add_client("c-s", primary_clinician_id="dr-stranger")
    await open_for(harness, "own", "c-s", by="dr-stranger")
    created = await harness.ok(task("dr-stranger", "own", "t-1", title="Mine"), TaskView)
    assert created.conversation_id == "own"
    theirs = await harness.ok(task_update("dr-stranger", "t-1", done=True), TaskView)
    assert (theirs.conversation_id, theirs.title, theirs.done) == ("own", "Mine", True)
    kept = await harness.ok(task_update("dr-primary", "t-1", title="Call back today"), TaskView)
    assert (kept.conversation_id, kept.done) == ("hidden", False)

    # an id used in a thread one can see is taken
    await open_for(harness, "another", "c1", by="dr-primary")
    taken = await harness.problem(task("dr-primary", "another", "t-1"))
    assert (taken.code, taken.status) == ("duplicate_task_id", 409)


async def test_a_task_goes_only_to_an_active_team_member_who_can_see_its_thread(
    harness: Harness, team: Team
) -> None:
    await harness.add_staff("gone", StaffRole.CLINICIAN, client_ids=["c1"], active=False)
    await open_for(harness, "conv", "c1", by="dr-primary")
    refusals = {
        "nobody": ("unknown_assignee", 422),
        "gone": ("unknown_assignee", 422),
        "dr-stranger": ("assignee_without_access", 403),
        "scheduler": ("assignee_without_access", 403),
    }
    for assignee, expected in refusals.items():
        problem = await harness.problem(
            task("dr-primary", "conv", f"t-{assignee}", assignee_id=assignee)
        )
        assert (problem.code, problem.status) == expected, assignee

    created = await harness.ok(task("dr-primary", "conv", "t-1", assignee_id="dr-other"), TaskView)
    assert created.assignee_id == "dr-other"
    for assignee, expected in refusals.items():
        problem = await harness.problem(task_update("dr-primary", "t-1", assignee_id=assignee))
        assert (problem.code, problem.status) == expected, assignee
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"), ThreadView
    )
    assert [(t.task_id, t.assignee_id) for t in thread.tasks] == [("t-1", "dr-other")]
