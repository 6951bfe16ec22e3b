"""A process killed between the write and the publish still publishes after a restart; one
stopped cleanly tells its peers at once; a request its caller gave up on while the service was
down is not carried out when it comes back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sotto_contracts.conversations import (
    ConversationKind,
    ConversationOpened,
    MarkRead,
    MessagePosted,
    OpenConversation,
    PostMessage,
    ThreadView,
    UnreadReminderDue,
)
from sotto_contracts.inbound import InquiryReceived
from sotto_conversations.main import create_app
from sotto_kit.instances import INSTANCES
from sotto_kit.messaging import RequestTimeoutError
from tests.integration.conversations.conftest import (
    PRACTICE,
    Harness,
    running_service,
    seed_team,
    wait_until_consuming,
)
from tests.support.instances import registry_entry_running_then_stopped
from tests.support.serving import free_port, serve
from tests.support.waiting import eventually

FASTSTREAM = Path(sys.executable).with_name("faststream")


@contextmanager
def service_process(
    harness: Harness, *, crash_after_write: bool
) -> Iterator[subprocess.Popen[bytes]]:
    settings = harness.settings
    environment = {
        **os.environ,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "MONGODB_URL": settings.mongodb_url,
        "SOTTO_NAMESPACE": settings.namespace,
        "SOTTO_DELIVERY_LIMIT": str(settings.delivery_limit),
        "CONVERSATIONS_DATABASE": settings.database,
        "CONVERSATIONS_OUTBOX_INTERVAL_SECONDS": "0.2",
        "CONVERSATIONS_FAULT_CRASH_AFTER_WRITE": "1" if crash_after_write else "0",
    }
    process = subprocess.Popen(
        [
            str(FASTSTREAM),
            "run",
            "sotto_conversations.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


async def exited(process: subprocess.Popen[bytes]) -> None:
    await eventually(lambda: asyncio.to_thread(process.poll), until=lambda code: code is not None)


async def test_killed_after_the_write_publishes_after_restart(
    parts: Harness, infra_url: str
) -> None:
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.ok(
            OpenConversation(
                practice_id=PRACTICE,
                actor=team.primary,
                conversation_id="conv",
                subject="Plan",
                client_id="c1",
            ),
            ThreadView,
        )
    request = PostMessage(
        practice_id=PRACTICE,
        actor=team.primary,
        conversation_id="conv",
        posted_message_id="m-crash",
        body="Written, then the process died",
    )

    with service_process(harness, crash_after_write=True) as doomed:
        await wait_until_consuming(infra_url, harness.settings.topology)
        with pytest.raises(RequestTimeoutError):
            await harness.rpc.call(request, timeout=5)
        await exited(doomed)
        assert doomed.returncode == 137
    stored = await harness.database["threads"].find_one({"conversation_id": "conv"})
    assert stored is not None
    assert "m-crash" in stored["messages"]
    assert stored["outbox_pending"] is True
    assert harness.events.of(MessagePosted, posted_message_id="m-crash") == []

    with service_process(harness, crash_after_write=False):
        await wait_until_consuming(infra_url, harness.settings.topology)
        published = await harness.events.wait_for(MessagePosted, posted_message_id="m-crash")
        assert published[0]["conversation_id"] == "conv"

        async def settled() -> bool:
            document = await harness.database["threads"].find_one({"conversation_id": "conv"})
            return document is not None and document["outbox_pending"] is False

        await eventually(settled, what="outbox emptied")
    assert (
        len(
            {e["message_id"] for e in harness.events.of(MessagePosted, posted_message_id="m-crash")}
        )
        == 1
    )
    final = await harness.database["threads"].find_one({"conversation_id": "conv"})
    assert final is not None
    assert list(final["messages"]) == ["m-crash"]


async def test_killed_after_opening_with_a_first_message_still_reminds_the_client(
    parts: Harness, infra_url: str
) -> None:
    """The thread is written, the process dies before the first message's reminder is: the
    redelivered request finds the thread and must still remind the client."""
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, client_notification_delay_seconds=0)
    request = OpenConversation(
        practice_id=PRACTICE,
        actor=team.primary,
        conversation_id="conv-first",
        subject="Plan",
        client_id="c1",
        first_message="Written, then the process died",
    )

    with service_process(harness, crash_after_write=True) as doomed:
        await wait_until_consuming(infra_url, harness.settings.topology)
        with pytest.raises(RequestTimeoutError):
            await harness.rpc.call(request, timeout=5)
        await exited(doomed)
    assert await harness.database["threads"].find_one({"conversation_id": "conv-first"})
    assert await harness.database["reminders"].count_documents({}) == 0

    with service_process(harness, crash_after_write=False):
        await wait_until_consuming(infra_url, harness.settings.topology)
        reminded = await harness.events.wait_for(UnreadReminderDue, conversation_id="conv-first")
    assert reminded[0]["recipient"] == {"kind": "client", "id": "c1"}


async def test_killed_after_an_inquiry_is_written_still_reminds_its_clinician(
    parts: Harness, infra_url: str
) -> None:
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, staff_notification_delay_seconds=0)
    inquiry = InquiryReceived(
        practice_id=PRACTICE,
        inquiry_id="inq-crash",
        client_id="prospect-1",
        display_name="Riley Prospect",
        clinician_id="dr-primary",
        body="Do you take new clients?",
    )

    with service_process(harness, crash_after_write=True) as doomed:
        await wait_until_consuming(infra_url, harness.settings.topology)
        await harness.amqp.publish(inquiry)
        await exited(doomed)
    thread = await harness.database["threads"].find_one({"kind": ConversationKind.INQUIRY.value})
    assert thread is not None
    assert await harness.database["reminders"].count_documents({}) == 0

    with service_process(harness, crash_after_write=False):
        await wait_until_consuming(infra_url, harness.settings.topology)
        reminded = await harness.events.wait_for(
            UnreadReminderDue, conversation_id=thread["conversation_id"]
        )
    assert reminded[0]["recipient"] == {"kind": "staff", "id": "dr-primary"}


async def test_killed_after_marking_read_leaves_no_reminder_to_send(
    parts: Harness, infra_url: str
) -> None:
    """A repeated mark-read finds the thread read and changes nothing, so the reminder must
    already be gone when the read is written."""
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)
        await harness.configure(team.owner, client_notification_delay_seconds=3600)
        await harness.ok(
            OpenConversation(
                practice_id=PRACTICE,
                actor=team.primary,
                conversation_id="conv-read",
                subject="Plan",
                client_id="c1",
                first_message="Please read this",
            ),
            ThreadView,
        )
    assert await harness.database["reminders"].count_documents({"recipient": "client:c1"}) == 1

    with service_process(harness, crash_after_write=True) as doomed:
        await wait_until_consuming(infra_url, harness.settings.topology)
        with pytest.raises(RequestTimeoutError):
            await harness.rpc.call(
                MarkRead(practice_id=PRACTICE, actor=team.client, conversation_id="conv-read"),
                timeout=5,
            )
        await exited(doomed)
    thread = await harness.database["threads"].find_one({"conversation_id": "conv-read"})
    assert thread is not None
    assert "client:c1" not in thread["unread_by"]
    assert await harness.database["reminders"].count_documents({"recipient": "client:c1"}) == 0


async def test_an_instance_stopping_cleanly_marks_itself_stopped_for_its_peers(
    parts: Harness, infra_url: str
) -> None:
    """Its last step, after the broker stopped: peers look for what it left at their next
    heartbeat instead of once its heartbeat goes stale."""
    running, stopped = await registry_entry_running_then_stopped(
        parts.database[INSTANCES], running_service(parts.settings, infra_url)
    )
    assert "stopped_at" not in running
    assert "stopped_at" in stopped


async def test_a_request_its_caller_gave_up_on_while_the_service_was_down_is_not_carried_out(
    parts: Harness, infra_url: str
) -> None:
    """The caller was told it failed (the gateway answered 503), so doing it later would
    surprise its sender, and would keep fresh requests waiting behind stale ones."""
    harness = parts
    async with running_service(harness.settings, infra_url):
        team = await seed_team(harness)

    def opening(conversation_id: str) -> OpenConversation:
        return OpenConversation(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id=conversation_id,
            subject="Plan",
            client_id="c1",
        )

    with pytest.raises(RequestTimeoutError):
        await harness.rpc.call(opening("conv-abandoned"), timeout=1)

    async with (
        serve(create_app(harness.settings)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        await wait_until_consuming(infra_url, harness.settings.topology)

        async def expired() -> dict[str, int]:
            counts: dict[str, int] = (await http.get("/health")).json()["messages"]["expired"]
            return counts

        await eventually(
            expired,
            until=lambda counts: counts.get(OpenConversation.ROUTING_KEY) == 1,
            what="the abandoned request dropped",
        )
        await harness.ok(opening("conv-fresh"), ThreadView)
    threads = harness.database["threads"]
    assert await threads.count_documents({"conversation_id": "conv-abandoned"}) == 0
    assert await threads.count_documents({"conversation_id": "conv-fresh"}) == 1
    assert harness.events.of(ConversationOpened, conversation_id="conv-abandoned") == []
