"""Practice settings: away message, banner, office hours, rate limit, permissions."""

from __future__ import annotations

from datetime import time

from sotto_contracts.conversations import (
    GetSettings,
    GetThread,
    MessagePosted,
    MessageView,
    OfficeHours,
    OpenConversation,
    PostMessage,
    PracticeSettings,
    PracticeSettingsPatch,
    SettingsChanged,
    ThreadView,
    UpdateSettings,
)
from tests.integration.conversations.conftest import PRACTICE, Harness, Team


async def open_conversation(harness: Harness, team: Team) -> None:
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            subject="Check-in",
            client_id="c1",
        ),
        ThreadView,
    )


def client_post(team: Team, message_id: str, body: str = "Hello") -> PostMessage:
    return PostMessage(
        practice_id=PRACTICE,
        actor=team.client,
        conversation_id="conv",
        posted_message_id=message_id,
        body=body,
    )


async def test_only_owners_and_managers_change_settings(harness: Harness, team: Team) -> None:
    defaults = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert defaults.client_notification_delay_seconds == 600
    assert defaults.staff_notification_delay_seconds == 600
    assert defaults.route_client_emails_through_portal is True

    change = PracticeSettingsPatch(banner="Replies within two business days")
    problem = await harness.problem(
        UpdateSettings(practice_id=PRACTICE, actor=team.primary, changes=change)
    )
    assert (problem.code, problem.status) == ("not_permitted", 403)
    updated = await harness.ok(
        UpdateSettings(practice_id=PRACTICE, actor=team.manager, changes=change), PracticeSettings
    )
    assert updated.banner == "Replies within two business days"
    event = await harness.events.wait_for(SettingsChanged)
    assert event[0]["changed_fields"] == ["banner"]
    assert "business days" not in str(harness.events.received)

    problem = await harness.problem(GetSettings(practice_id="unknown-practice"))
    assert (problem.code, problem.status) == ("not_found", 404)
    too_long = UpdateSettings.model_construct(
        practice_id=PRACTICE,
        actor=team.owner,
        changes=PracticeSettingsPatch.model_construct(away_message="x" * 601),
    )
    problem = await harness.problem(too_long)
    assert problem.status == 422
    assert (
        await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    ).away_message == ""


async def test_a_misspelt_time_zone_is_refused_and_changes_nothing(
    harness: Harness, team: Team
) -> None:
    typo = PracticeSettingsPatch(time_zone="America/New_Yrok", banner="Closed Friday")
    problem = await harness.problem(
        UpdateSettings(practice_id=PRACTICE, actor=team.owner, changes=typo)
    )
    assert (problem.code, problem.status) == ("unknown_time_zone", 422)
    unchanged = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert (unchanged.time_zone, unchanged.banner) == ("UTC", "")
    fixed = PracticeSettingsPatch(time_zone="America/New_York")
    updated = await harness.ok(
        UpdateSettings(practice_id=PRACTICE, actor=team.owner, changes=fixed), PracticeSettings
    )
    assert updated.time_zone == "America/New_York"


async def test_away_message_banner_and_automatic_reply(harness: Harness, team: Team) -> None:
    await open_conversation(harness, team)
    await harness.configure(
        team.owner,
        away_message_enabled=True,
        away_message="Out until Monday",
        banner="No emergencies here",
        edit_note="Messages are part of your record",
    )
    posted = await harness.ok(client_post(team, "m-1"), MessageView)
    client_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id="conv"), ThreadView
    )
    assert client_view.away_message == "Out until Monday"
    assert client_view.banner == "No emergencies here"
    assert client_view.edit_note == "Messages are part of your record"
    assert [m.body for m in client_view.messages] == ["Hello", "Out until Monday"]
    assert client_view.messages[1].automatic
    assert client_view.messages[1].sender is None

    staff_view = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"), ThreadView
    )
    assert staff_view.conversation.unread
    assert posted.message_id in [m.message_id for m in staff_view.messages]
    automatic = await harness.events.wait_for(MessagePosted, automatic=True)
    assert automatic[0]["recipients"] == [{"kind": "client", "id": "c1"}]

    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            posted_message_id="m-staff",
            body="Staff reply",
        ),
        MessageView,
    )
    after = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"), ThreadView
    )
    assert [m.automatic for m in after.messages] == [False, True, False]


async def test_after_hours_reply_points_to_crisis_line(harness: Harness, team: Team) -> None:
    await open_conversation(harness, team)
    closed_all_week = [
        OfficeHours(weekday=day, opens=time(0, 0), closes=time(0, 0)) for day in range(7)
    ]
    await harness.configure(
        team.owner, office_hours=closed_all_week, after_hours_reply_enabled=True
    )
    await harness.ok(client_post(team, "m-night"), MessageView)
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id="conv"), ThreadView
    )
    assert thread.messages[-1].automatic
    assert "988" in thread.messages[-1].body

    open_all_day = [
        OfficeHours(weekday=day, opens=time(0, 0), closes=time(23, 59, 59)) for day in range(7)
    ]
    await harness.configure(team.owner, office_hours=open_all_day)
    await harness.ok(client_post(team, "m-day"), MessageView)
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.client, conversation_id="conv"), ThreadView
    )
    assert [m.message_id for m in thread.messages if not m.automatic][-1] == "m-day"
    assert thread.messages[-1].message_id == "m-day"


async def test_client_rate_limit(harness: Harness, team: Team) -> None:
    await open_conversation(harness, team)
    await harness.configure(
        team.owner, client_rate_limit_count=2, client_rate_limit_period_seconds=3600
    )
    await harness.ok(client_post(team, "m-1"), MessageView)
    await harness.ok(client_post(team, "m-1"), MessageView)  # a retry is not a second message
    await harness.ok(client_post(team, "m-2"), MessageView)
    problem = await harness.problem(client_post(team, "m-3"))
    assert (problem.code, problem.status) == ("rate_limited", 429)
    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            posted_message_id="m-staff",
            body="Staff are not limited",
        ),
        MessageView,
    )
    thread = await harness.ok(
        GetThread(practice_id=PRACTICE, actor=team.primary, conversation_id="conv"), ThreadView
    )
    assert [m.message_id for m in thread.messages] == ["m-1", "m-2", "m-staff"]
