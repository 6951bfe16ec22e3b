"""Announcements are accepted at once and fan out in the background, batch by batch, into one
conversation, one message and one reminder per client, also across restarts and crashes."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sotto_contracts.base import Message
from sotto_contracts.common import ParticipantRef
from sotto_contracts.conversations import (
    AnnouncementResult,
    AnnouncementState,
    ConversationOpened,
    ConversationSummary,
    GetAnnouncement,
    ListClientConversations,
    MarkRead,
    MessagePosted,
    MessageRead,
    SendAnnouncement,
    UnreadReminderDue,
)
from sotto_conversations.config import ConversationsSettings
from tests.integration.conversations.conftest import (
    PRACTICE,
    Harness,
    Team,
    client,
    running_service,
    seed_team,
    wait_until_consuming,
)
from tests.support.infra import REPO
from tests.support.processes import ServiceProcess
from tests.support.serving import free_port
from tests.support.waiting import eventually

CLIENTS = 40
BATCH = 4
SUBJECT = "Holiday hours"
BODY = "Closed on Thursday :palm_tree:"
LOGS = REPO / "test-output" / "conversations"


def quick_announcements(settings: ConversationsSettings, **overrides: Any) -> ConversationsSettings:
    """Small batches (an announcement takes many), looked for often, short leases."""
    return settings.model_copy(
        update={
            "announcement_batch_size": BATCH,
            "announcement_poll_seconds": 0.05,
            "announcement_scan_seconds": 0.5,
            "announcement_lease_seconds": 2.0,
            **overrides,
        }
    )


@pytest.fixture
async def harness(parts: Harness, infra_url: str) -> AsyncIterator[Harness]:
    parts.settings = quick_announcements(parts.settings)
    async with running_service(parts.settings, infra_url):
        yield parts


def announcement(
    actor: ParticipantRef, clinician_id: str | None = None, announcement_id: str = "holiday"
) -> SendAnnouncement:
    """A new request each call (its own message id): repeats are told apart by the
    announcement id alone."""
    return SendAnnouncement(
        practice_id=PRACTICE,
        actor=actor,
        announcement_id=announcement_id,
        subject=SUBJECT,
        body=BODY,
        clinician_id=clinician_id,
    )


async def progress(
    harness: Harness, actor: ParticipantRef, announcement_id: str = "holiday"
) -> AnnouncementResult:
    query = GetAnnouncement(practice_id=PRACTICE, actor=actor, announcement_id=announcement_id)
    return await harness.ok(query, AnnouncementResult)


async def until_sent(
    harness: Harness, actor: ParticipantRef, announcement_id: str = "holiday"
) -> AnnouncementResult:
    async def current() -> AnnouncementResult:
        return await progress(harness, actor, announcement_id)

    return await eventually(
        current,
        until=lambda result: result.state is AnnouncementState.SENT,
        timeout=60,
        what=f"announcement {announcement_id} sent",
    )


async def add_bulk_clients(harness: Harness, count: int) -> set[str]:
    for n in range(count):
        await harness.add_client(
            f"bulk-{n}", primary_clinician_id="dr-other" if n % 2 else "dr-primary"
        )
    return {f"bulk-{n}" for n in range(count)} | {"c1"}


async def announcement_threads(harness: Harness) -> Counter[str]:
    """Announcement conversations per client."""
    cursor = harness.database["threads"].find({"subject": SUBJECT}, {"client_id": 1})
    return Counter([document["client_id"] async for document in cursor])


async def distinct_events(harness: Harness, event_type: type[Message], by: str) -> Counter[str]:
    """Distinct events (by message id; a relayed copy has the same id) per value of `by`."""
    seen = {event["message_id"]: str(event[by]) for event in harness.events.of(event_type)}
    return Counter(seen.values())


async def reminded(harness: Harness) -> Counter[str]:
    """Distinct reminders per client."""
    seen = {e["message_id"]: e["recipient"]["id"] for e in harness.events.of(UnreadReminderDue)}
    return Counter(seen.values())


async def every_client_reminded(harness: Harness, expected: set[str]) -> None:
    await eventually(
        lambda: reminded(harness),
        until=lambda counts: set(counts) == expected,
        what="a reminder for every client",
    )


async def events_settled(harness: Harness) -> None:
    """Every event published so far has arrived: one published now arrives after them (a
    publisher confirm means the event is queued, and the recording queue keeps order)."""
    marker = MessageRead(
        practice_id="marker", conversation_id="marker", reader=client("marker"), actor=None
    )
    await harness.amqp.publish(marker)
    await harness.events.wait_for(MessageRead, practice_id="marker")


async def test_announcement_reaches_every_active_client_once(harness: Harness, team: Team) -> None:
    await harness.configure(team.owner, client_notification_delay_seconds=0)
    expected = await add_bulk_clients(harness, CLIENTS)
    await harness.add_client("inactive", primary_clinician_id="dr-primary", active=False)

    problem = await harness.problem(announcement(team.primary))
    assert (problem.code, problem.status) == ("not_permitted", 403)

    accepted = await harness.ok(announcement(team.owner), AnnouncementResult)
    # answered on acceptance: the conversations are created afterwards, batch by batch
    assert accepted.state is AnnouncementState.SENDING
    assert (accepted.clients, accepted.conversations) == (CLIENTS + 1, 0)
    assert sum((await announcement_threads(harness)).values()) < CLIENTS + 1

    repeated = await harness.ok(announcement(team.owner), AnnouncementResult)
    assert repeated.clients == CLIENTS + 1
    sent = await until_sent(harness, team.owner)
    assert (sent.clients, sent.conversations) == (CLIENTS + 1, CLIENTS + 1)
    again = await harness.ok(announcement(team.owner), AnnouncementResult)
    assert again == sent

    await every_client_reminded(harness, expected)
    await events_settled(harness)
    assert set((await reminded(harness)).values()) == {1}
    threads = await announcement_threads(harness)
    assert set(threads) == expected
    assert set(threads.values()) == {1}
    posted = await distinct_events(harness, MessagePosted, "conversation_id")
    assert len(posted) == CLIENTS + 1
    assert set(posted.values()) == {1}

    listed = await harness.ok_list(
        ListClientConversations(practice_id=PRACTICE, actor=client("bulk-3")), ConversationSummary
    )
    assert [summary.subject for summary in listed] == [SUBJECT]
    assert await harness.database["threads"].count_documents({"client_id": "inactive"}) == 0

    own = await harness.ok(
        announcement(team.primary, clinician_id="dr-primary", announcement_id="own"),
        AnnouncementResult,
    )
    assert own.clients == CLIENTS // 2 + 1
    assert (await until_sent(harness, team.primary, "own")).conversations == CLIENTS // 2 + 1
    assert (await progress(harness, team.manager, "own")).clients == CLIENTS // 2 + 1
    hidden = await harness.problem(
        GetAnnouncement(practice_id=PRACTICE, actor=team.other_clinician, announcement_id="own")
    )
    assert (hidden.code, hidden.status) == ("not_found", 404)
    taken = await harness.problem(
        announcement(team.other_clinician, clinician_id="dr-other", announcement_id="own")
    )
    assert (taken.code, taken.status) == ("duplicate_announcement_id", 409)


async def test_an_announcement_without_recipients_is_sent_at_once(
    harness: Harness, team: Team
) -> None:
    accepted = await harness.ok(
        announcement(team.stranger_clinician, clinician_id="dr-stranger"), AnnouncementResult
    )
    assert accepted == AnnouncementResult(
        announcement_id="holiday", clients=0, conversations=0, state=AnnouncementState.SENT
    )


async def test_two_instances_never_work_the_same_announcement(
    parts: Harness, infra_url: str
) -> None:
    """The second instance sees the first one's lease on every scan and leaves it alone."""
    harness = parts
    settings = quick_announcements(
        harness.settings, announcement_batch_size=2, announcement_lease_seconds=30.0
    )
    harness.settings = settings
    async with running_service(settings, infra_url), running_service(settings, infra_url):
        team = await seed_team(harness)
        expected = await add_bulk_clients(harness, CLIENTS)
        await harness.ok(announcement(team.owner), AnnouncementResult)
        sent = await until_sent(harness, team.owner)
    assert sent.conversations == CLIENTS + 1
    stored = await harness.database["announcements"].find_one({"_id": f"{PRACTICE}:holiday"})
    assert stored is not None
    assert stored["lease_epoch"] == 1, "another instance took the announcement over"
    assert "recipient_ids" not in stored  # finished: only its status is kept
    assert "body" not in stored
    threads = await announcement_threads(harness)
    assert set(threads) == expected
    assert set(threads.values()) == {1}


async def test_batches_run_again_create_and_remind_nothing_twice(
    parts: Harness, infra_url: str
) -> None:
    """An instance that stopped after recording one batch (but having written more) is
    resumed by the next: the batches it runs again insert nothing and remind nobody again,
    not even the client who already read the announcement (their reminder was cancelled)."""
    harness = parts
    harness.settings = quick_announcements(harness.settings)
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, client_notification_delay_seconds=0)
        expected = await add_bulk_clients(harness, 11)
        await harness.ok(announcement(team.owner), AnnouncementResult)
        await until_sent(harness, team.owner)
        await every_client_reminded(harness, expected)
        [read] = await harness.ok_list(
            ListClientConversations(practice_id=PRACTICE, actor=client("bulk-9")),
            ConversationSummary,
        )
        await harness.ok(
            MarkRead(
                practice_id=PRACTICE, actor=client("bulk-9"), conversation_id=read.conversation_id
            ),
            ConversationSummary,
        )
    await events_settled(harness)
    seen_before = len(harness.events.received)
    recipients = sorted(expected)
    assert recipients.index("bulk-9") >= BATCH, "the read client must be in a batch run again"

    await harness.database["announcements"].update_one(
        {"_id": f"{PRACTICE}:holiday"},
        {
            "$set": {
                "state": AnnouncementState.SENDING.value,
                "finished_at": None,
                "processed": BATCH,
                "conversations": BATCH,
                "recipient_ids": recipients,
                "body": BODY,
                "lease_holder": "an-instance-that-died",
                "lease_until": None,
            }
        },
    )
    async with running_service(harness.settings, infra_url):
        sent = await until_sent(harness, team.owner)
        await events_settled(harness)

    assert (sent.clients, sent.conversations) == (len(expected), len(expected))
    published_again = [key for key, _ in harness.events.received[seen_before:]]
    assert published_again == [MessageRead.ROUTING_KEY], "a batch run again published events"
    threads = await announcement_threads(harness)
    assert set(threads) == expected
    assert set(threads.values()) == {1}
    assert set((await reminded(harness)).values()) == {1}
    assert await harness.database["reminders"].count_documents({"recipient": "client:bulk-9"}) == 0


def conversations_process(
    settings: ConversationsSettings, *, crash_after_write: bool
) -> ServiceProcess:
    environment = {
        **os.environ,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "MONGODB_URL": settings.mongodb_url,
        "SOTTO_NAMESPACE": settings.namespace,
        "SOTTO_DELIVERY_LIMIT": str(settings.delivery_limit),
        "CONVERSATIONS_DATABASE": settings.database,
        "CONVERSATIONS_OUTBOX_INTERVAL_SECONDS": "0.2",
        "CONVERSATIONS_ANNOUNCEMENT_BATCH_SIZE": str(settings.announcement_batch_size),
        "CONVERSATIONS_ANNOUNCEMENT_POLL_SECONDS": "0.3",
        "CONVERSATIONS_ANNOUNCEMENT_LEASE_SECONDS": str(settings.announcement_lease_seconds),
        "CONVERSATIONS_FAULT_CRASH_AFTER_WRITE": "1" if crash_after_write else "0",
    }
    return ServiceProcess.worker(
        "conversations",
        "sotto_conversations.main:create_app",
        free_port(),
        environment,
        LOGS / f"announcement-crash-{settings.namespace}.log",
    )


async def test_killed_in_the_first_batch_the_announcement_is_finished_after_restart(
    parts: Harness, infra_url: str
) -> None:
    """The process dies right after writing the first batch's threads (before publishing
    their events or recording the batch); once its lease runs out, a new instance runs that
    batch again and the rest: every client gets one conversation, one message, one reminder."""
    harness = parts
    harness.settings = quick_announcements(harness.settings)
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, client_notification_delay_seconds=0)
        expected = await add_bulk_clients(harness, 11)

    doomed = conversations_process(harness.settings, crash_after_write=True)
    doomed.start()
    try:
        await wait_until_consuming(infra_url, harness.settings.topology)
        accepted = await harness.ok(announcement(team.owner), AnnouncementResult)
        assert accepted.state is AnnouncementState.SENDING
        process = doomed.process
        assert process is not None
        exited = await eventually(
            lambda: asyncio.to_thread(process.poll),
            until=lambda code: code is not None,
            what="the crash after the first write",
        )
        assert exited == 137
    finally:
        doomed.kill()
    stored = await harness.database["announcements"].find_one({"_id": f"{PRACTICE}:holiday"})
    assert stored is not None
    assert (stored["state"], stored["processed"]) == (AnnouncementState.SENDING.value, 0)
    assert sum((await announcement_threads(harness)).values()) == BATCH
    assert harness.events.of(MessagePosted) == []

    async with running_service(harness.settings, infra_url):
        sent = await until_sent(harness, team.owner)
        await every_client_reminded(harness, expected)
        await eventually(
            lambda: distinct_events(harness, MessagePosted, "conversation_id"),
            until=lambda posted: len(posted) == len(expected),
            what="the first batch's events relayed",
        )
        await events_settled(harness)

    assert (sent.clients, sent.conversations) == (len(expected), len(expected))
    threads = await announcement_threads(harness)
    assert set(threads) == expected
    assert set(threads.values()) == {1}
    for event_type in (ConversationOpened, MessagePosted):
        per_conversation = await distinct_events(harness, event_type, "conversation_id")
        assert len(per_conversation) == len(expected)
        assert set(per_conversation.values()) == {1}
    assert set((await reminded(harness)).values()) == {1}
