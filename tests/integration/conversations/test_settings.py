"""Practice settings: away message, banner, office hours, rate limit, permissions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

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
from sotto_contracts.inbound import InquiryReceived, PracticeUpserted
from tests.integration.conversations.conftest import PRACTICE, Harness, Team
from tests.support.waiting import eventually


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
    another_day = (datetime.now(UTC).weekday() + 3) % 7
    open_another_day = [OfficeHours(weekday=another_day, opens=time(9), closes=time(17))]
    await harness.configure(
        team.owner, office_hours=open_another_day, after_hours_reply_enabled=True
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


async def test_a_practice_update_leaves_the_time_zone_the_owner_chose(
    harness: Harness, team: Team
) -> None:
    await harness.configure(team.owner, time_zone="America/Chicago")

    def practice(time_zone: str | None = None) -> PracticeUpserted:
        return PracticeUpserted(
            practice_id=PRACTICE,
            slug="calm-waters",
            display_name="Calm Waters",
            time_zone=time_zone,
        )

    await harness.amqp.publish(practice())
    await harness.handled(PracticeUpserted)
    kept = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert kept.time_zone == "America/Chicago"

    await harness.amqp.publish(practice(time_zone="Europe/Berlin"))
    await harness.handled(PracticeUpserted, count=2)
    moved = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert moved.time_zone == "Europe/Berlin"

    await harness.amqp.publish(practice(time_zone="Europe/Berlni"))
    [parked] = await eventually(lambda: harness.amqp.parked("conversations"), what="parking")
    assert "Europe/Berlni" in parked.reason
    unchanged = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert unchanged.time_zone == "Europe/Berlin"


async def test_one_automatic_reply_until_the_team_answers(harness: Harness, team: Team) -> None:
    await open_conversation(harness, team)
    await harness.configure(team.owner, away_message_enabled=True, away_message="Out today")
    for message_id in ("m-1", "m-2", "m-3"):
        await harness.ok(client_post(team, message_id), MessageView)

    async def automatic() -> list[bool]:
        view = await harness.ok(
            GetThread(practice_id=PRACTICE, actor=team.client, conversation_id="conv"),
            ThreadView,
        )
        return [m.automatic for m in view.messages]

    assert await automatic() == [False, True, False, False]
    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv",
            posted_message_id="m-staff",
            body="Back tomorrow",
        ),
        MessageView,
    )
    await harness.ok(client_post(team, "m-4"), MessageView)
    await harness.ok(client_post(team, "m-5"), MessageView)
    assert await automatic() == [False, True, False, False, False, False, True, False]


async def test_no_automatic_reply_goes_into_an_inquiry(harness: Harness, team: Team) -> None:
    await harness.configure(team.owner, away_message_enabled=True, away_message="Out today")
    await harness.amqp.publish(
        InquiryReceived(
            practice_id=PRACTICE,
            inquiry_id="inq-away",
            client_id="prospect-1",
            display_name="Riley Prospect",
            clinician_id="dr-primary",
            body="Do you take new clients?",
        )
    )
    await harness.handled(InquiryReceived)
    [inquiry] = [document async for document in harness.database["threads"].find()]
    view = await harness.ok(
        GetThread(
            practice_id=PRACTICE, actor=team.primary, conversation_id=inquiry["conversation_id"]
        ),
        ThreadView,
    )
    assert [(m.body, m.automatic) for m in view.messages] == [("Do you take new clients?", False)]


async def test_concurrent_client_messages_stay_within_the_rate_limit(
    harness: Harness, team: Team
) -> None:
    await open_conversation(harness, team)
    await harness.ok(
        OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv-2",
            subject="Forms",
            client_id="c1",
        ),
        ThreadView,
    )
    await harness.configure(
        team.owner, client_rate_limit_count=3, client_rate_limit_period_seconds=3600
    )
    posts = [
        PostMessage(
            practice_id=PRACTICE,
            actor=team.client,
            conversation_id=conversation_id,
            posted_message_id=f"burst-{conversation_id}-{n}",
            body="Hello",
        )
        for n in range(5)
        for conversation_id in ("conv", "conv-2")
    ]
    replies = await asyncio.gather(*(harness.rpc.call(post) for post in posts))
    refusals = [reply.problem.code for reply in replies if reply.problem is not None]
    assert (sum(reply.ok for reply in replies), refusals) == (3, ["rate_limited"] * 7)
    stored = [
        message_id
        async for document in harness.database["threads"].find()
        for message_id in document["messages"]
    ]
    assert len(stored) == 3


async def test_office_hours_must_open_before_they_close(harness: Harness, team: Team) -> None:
    backwards = OfficeHours.model_construct(weekday=0, opens=time(17), closes=time(9))
    problem = await harness.problem(
        UpdateSettings.model_construct(
            practice_id=PRACTICE,
            actor=team.owner,
            changes=PracticeSettingsPatch.model_construct(office_hours=[backwards]),
        )
    )
    assert problem.status == 422
    assert "opens must be before closes" in problem.detail
    # Stored before the rule: such hours never matched any time, and are left out when read.
    stored = {"weekday": 1, "opens": "00:00:00", "closes": "00:00:00"}
    weekday = {"weekday": 2, "opens": "09:00:00", "closes": "17:00:00"}
    await harness.database["settings"].update_one(
        {"_id": PRACTICE}, {"$set": {"values.office_hours": [stored, weekday]}}
    )
    settings = await harness.ok(GetSettings(practice_id=PRACTICE), PracticeSettings)
    assert settings.office_hours == [OfficeHours(weekday=2, opens=time(9), closes=time(17))]
