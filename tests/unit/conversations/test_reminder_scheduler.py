"""When the reminder scheduler queries (each query reads the whole reminders collection on
FerretDB): at start-up, when a reminder it knows of is due, after another instance departed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from pymongo import AsyncMongoClient

from sotto_contracts.base import Message
from sotto_conversations.adapters.reminders import ReminderScheduler
from sotto_kit.instances import Instances
from sotto_kit.mongo import Document
from tests.support.clock import MovingClock


class FakeStore:
    def __init__(self) -> None:
        self.on_reminder_scheduled: Callable[[datetime], None] | None = None
        self.queries = 0
        self.failing = False

    async def claim_due_reminders(
        self, now: datetime, event_for: Callable[[Document], Message], limit: int
    ) -> tuple[int, int, datetime | None]:
        self.queries += 1
        if self.failing:
            raise ConnectionError("database unavailable")
        return 0, 0, None


def unused_registry() -> Instances:
    """A registry whose departures the test sets; it never reaches a server."""
    client: AsyncMongoClient[Document] = AsyncMongoClient("mongodb://127.0.0.1:9", connect=False)
    return Instances(client["unused"]["instances"])


def scheduler(store: FakeStore, clock: MovingClock, instances: Instances) -> ReminderScheduler:
    return ReminderScheduler(
        store,
        lambda document: Message(practice_id="p"),
        clock,
        interval_seconds=1,
        scan_seconds=600,
        instances=instances,
    )


async def test_after_start_up_it_queries_only_for_known_reminders_and_departures() -> None:
    store, clock, instances = FakeStore(), MovingClock(), unused_registry()
    reminders = scheduler(store, clock, instances)

    await reminders.tick()
    await reminders.tick()
    assert store.queries == 1  # the start-up query only

    assert store.on_reminder_scheduled is not None
    store.on_reminder_scheduled(clock.now)  # a handler of this instance scheduled one, due now
    await reminders.tick()
    await reminders.tick()
    assert store.queries == 2

    instances.departures += 1  # another instance's heartbeat went stale
    await reminders.tick()
    await reminders.tick()
    assert store.queries == 3


async def test_a_failed_query_is_tried_again_at_the_next_tick() -> None:
    store, clock, instances = FakeStore(), MovingClock(), unused_registry()
    reminders = scheduler(store, clock, instances)
    store.failing = True
    instances.departures += 1

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await reminders.tick()
    store.failing = False
    await reminders.tick()
    await reminders.tick()

    assert store.queries == 3
