"""Announcements fan out into one conversation, one message and one reminder per client."""

from __future__ import annotations

from sotto_contracts.common import ParticipantRef
from sotto_contracts.conversations import (
    AnnouncementResult,
    ConversationSummary,
    ListClientConversations,
    MessagePosted,
    SendAnnouncement,
    UnreadReminderDue,
)
from tests.integration.conversations.conftest import PRACTICE, Harness, Team, client
from tests.support.waiting import eventually

CLIENTS = 40


def announcement(actor: ParticipantRef, clinician_id: str | None = None) -> SendAnnouncement:
    return SendAnnouncement(
        practice_id=PRACTICE,
        actor=actor,
        announcement_id="holiday",
        subject="Holiday hours",
        body="Closed on Thursday :palm_tree:",
        clinician_id=clinician_id,
    )


async def test_announcement_reaches_every_active_client_once(harness: Harness, team: Team) -> None:
    await harness.configure(team.owner, client_notification_delay_seconds=0)
    for n in range(CLIENTS):
        await harness.add_client(
            f"bulk-{n}", primary_clinician_id="dr-other" if n % 2 else "dr-primary"
        )
    await harness.add_client("inactive", primary_clinician_id="dr-primary", active=False)

    problem = await harness.problem(announcement(team.primary))
    assert (problem.code, problem.status) == ("not_permitted", 403)

    result = await harness.ok(announcement(team.owner), AnnouncementResult)
    assert (result.clients, result.conversations) == (CLIENTS + 1, CLIENTS + 1)
    again = await harness.ok(announcement(team.owner), AnnouncementResult)
    assert again.conversations == 0

    async def reminded() -> set[str]:
        return {e["recipient"]["id"] for e in harness.events.of(UnreadReminderDue)}

    expected = {f"bulk-{n}" for n in range(CLIENTS)} | {"c1"}
    await eventually(reminded, until=lambda ids: ids == expected, what="one reminder per client")
    posted = {e["conversation_id"] for e in harness.events.of(MessagePosted)}
    assert len(posted) == CLIENTS + 1

    listed = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=client("bulk-3")), ConversationSummary
    )
    assert [summary.subject for summary in listed] == ["Holiday hours"]
    assert await harness.database["threads"].count_documents({"client_id": "inactive"}) == 0

    own = await harness.ok(
        announcement(team.primary, clinician_id="dr-primary"), AnnouncementResult
    )
    assert own.clients == CLIENTS // 2 + 1
