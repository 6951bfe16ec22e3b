"""Unread reminders: after the delay, once per conversation and recipient until read, durable,
and never doubled by a second instance."""

from __future__ import annotations

from typing import Any

from sotto_contracts.common import ParticipantRef, StaffRole
from sotto_contracts.conversations import (
    ConversationSummary,
    ListClientConversations,
    MarkRead,
    MessageView,
    OpenConversation,
    PostMessage,
    RemoveMessage,
    ThreadView,
    UnreadReminderDue,
)
from tests.integration.conversations.conftest import (
    PRACTICE,
    Harness,
    Team,
    running_service,
    seed_team,
)


def post(actor: ParticipantRef, conversation_id: str, message_id: str) -> PostMessage:
    return PostMessage(
        practice_id=PRACTICE,
        actor=actor,
        conversation_id=conversation_id,
        posted_message_id=message_id,
        body="Please see the attached plan",
    )


async def open_conversation(harness: Harness, team: Team, conversation_id: str) -> None:
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id=conversation_id,
            subject="Plan",
            client_id="c1",
        ),
        ThreadView,
    )


def reminders_for(
    harness: Harness, conversation_id: str, recipient_id: str
) -> list[dict[str, Any]]:
    """Distinct reminder events (a relay may repeat one: same message id) for one recipient."""
    distinct = {
        body["message_id"]: body
        for body in harness.events.of(UnreadReminderDue, conversation_id=conversation_id)
        if body["recipient"]["id"] == recipient_id
    }
    return list(distinct.values())


async def test_one_reminder_per_recipient_until_read_and_none_when_read_first(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, client_notification_delay_seconds=1)
    await open_conversation(harness, team, "conv")
    await harness.ok(post(team.primary, "conv", "m-1"), MessageView)
    await harness.ok(post(team.primary, "conv", "m-2"), MessageView)
    first = await harness.events.wait_for(UnreadReminderDue, conversation_id="conv")
    assert first[0]["recipient"] == {"kind": "client", "id": "c1"}
    assert first[0]["posted_message_id"] == "m-1"
    assert "plan" not in str(first[0])

    await harness.ok(post(team.primary, "conv", "m-3"), MessageView)
    await open_conversation(harness, team, "marker")
    await harness.ok(post(team.primary, "marker", "m-marker"), MessageView)
    await harness.events.wait_for(UnreadReminderDue, conversation_id="marker")
    assert len(reminders_for(harness, "conv", "c1")) == 1

    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.client, conversation_id="conv"),
        ConversationSummary,
    )
    await harness.ok(post(team.primary, "conv", "m-4"), MessageView)
    await eventually_reminders(harness, "conv", "c1", 2)
    assert reminders_for(harness, "conv", "c1")[1]["posted_message_id"] == "m-4"

    await harness.configure(team.owner, client_notification_delay_seconds=2)
    await open_conversation(harness, team, "read-first")
    await harness.ok(post(team.primary, "read-first", "m-5"), MessageView)
    await harness.ok(
        MarkRead(practice_id=PRACTICE, actor=team.client, conversation_id="read-first"),
        ConversationSummary,
    )
    await open_conversation(harness, team, "marker-2")
    await harness.ok(post(team.primary, "marker-2", "m-marker-2"), MessageView)
    await harness.events.wait_for(UnreadReminderDue, conversation_id="marker-2")
    assert reminders_for(harness, "read-first", "c1") == []


async def test_a_removed_message_is_never_reminded_of_but_what_is_still_unread_is(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, client_notification_delay_seconds=1)

    async def remove(conversation_id: str, message_id: str) -> None:
        await harness.ok(
            RemoveMessage(
                practice_id=PRACTICE,
                actor=team.primary,
                conversation_id=conversation_id,
                posted_message_id=message_id,
            ),
            MessageView,
        )

    await open_conversation(harness, team, "wrong")
    await harness.ok(post(team.primary, "wrong", "m-wrong"), MessageView)
    await remove("wrong", "m-wrong")
    await open_conversation(harness, team, "kept")
    await harness.ok(post(team.primary, "kept", "m-first"), MessageView)
    await harness.ok(post(team.primary, "kept", "m-second"), MessageView)
    await remove("kept", "m-first")
    await open_conversation(harness, team, "marker")
    await harness.ok(post(team.primary, "marker", "m-marker"), MessageView)
    await harness.events.wait_for(UnreadReminderDue, conversation_id="marker")

    assert reminders_for(harness, "wrong", "c1") == []
    assert [r["posted_message_id"] for r in reminders_for(harness, "kept", "c1")] == ["m-second"]
    summaries = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=team.client), ConversationSummary
    )
    unread = {s.conversation_id: s.unread for s in summaries}
    assert unread == {"wrong": False, "kept": True, "marker": True}


async def eventually_reminders(
    harness: Harness, conversation_id: str, recipient_id: str, count: int
) -> None:
    from tests.support.waiting import eventually

    async def found() -> int:
        return len(reminders_for(harness, conversation_id, recipient_id))

    await eventually(found, until=lambda n: n >= count, what="reminders")


async def test_staff_reminders_follow_delay_and_email_preference(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, staff_notification_delay_seconds=0)
    await open_conversation(harness, team, "conv")
    await harness.ok(post(team.client, "conv", "m-in"), MessageView)
    reminder = await harness.events.wait_for(UnreadReminderDue, conversation_id="conv")
    assert reminder[0]["recipient"] == {"kind": "staff", "id": "dr-primary"}

    await harness.add_staff("dr-primary", StaffRole.CLINICIAN, email_notifications=False)
    await open_conversation(harness, team, "quiet")
    await harness.ok(post(team.client, "quiet", "m-quiet"), MessageView)
    await harness.configure(team.owner, client_notification_delay_seconds=0)
    await open_conversation(harness, team, "marker")
    await harness.ok(post(team.primary, "marker", "m-marker"), MessageView)
    await harness.events.wait_for(UnreadReminderDue, conversation_id="marker")
    assert harness.events.of(UnreadReminderDue, conversation_id="quiet") == []


async def test_reminders_survive_a_restart_and_two_instances_never_double(
    parts: Harness, infra_url: str
) -> None:
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, client_notification_delay_seconds=2)
        await open_conversation(harness, team, "before-restart")
        await harness.ok(post(team.primary, "before-restart", "m-1"), MessageView)
    assert harness.events.of(UnreadReminderDue) == []

    async with (
        running_service(harness.settings, infra_url),
        running_service(harness.settings, infra_url),
    ):
        await harness.events.wait_for(UnreadReminderDue, conversation_id="before-restart")
        await harness.configure(team.owner, client_notification_delay_seconds=1)
        conversation_ids = [f"conv-{n}" for n in range(12)]
        for conversation_id in conversation_ids:
            await open_conversation(harness, team, conversation_id)
            await harness.ok(
                post(team.primary, conversation_id, f"m-{conversation_id}"), MessageView
            )
        for conversation_id in conversation_ids:
            await harness.events.wait_for(UnreadReminderDue, conversation_id=conversation_id)
        await open_conversation(harness, team, "marker")
        await harness.ok(post(team.primary, "marker", "m-marker"), MessageView)
        await harness.events.wait_for(UnreadReminderDue, conversation_id="marker")
    for conversation_id in ["before-restart", *conversation_ids]:
        assert len(reminders_for(harness, conversation_id, "c1")) == 1, conversation_id
