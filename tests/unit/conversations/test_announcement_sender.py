"""The announcement sender against a fake store: batches in order, leases held elsewhere,
a lease lost mid-way, a failing batch, a clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from sotto_conversations.adapters.announcements import AnnouncementSender
from sotto_conversations.adapters.store import AnnouncementClaim, announcement_key
from sotto_conversations.domain import Announcement

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE_SECONDS = 60.0
KEY = announcement_key("p", "holiday")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Lease:
    holder: str
    epoch: int
    until: datetime | None


class FakeStore:
    """Announcements and leases in memory, with the store's rules."""

    def __init__(self, clock: Clock) -> None:
        self.on_announcement_accepted: Callable[[str], None] | None = None
        self._clock = clock
        self.announcements: dict[str, Announcement] = {}
        self.leases: dict[str, Lease] = {}
        self.claims = 0
        self.released: list[tuple[str, int]] = []

    def accept(self, recipients: int) -> Announcement:
        announcement = Announcement(
            practice_id="p",
            announcement_id="holiday",
            sender_id="owner",
            subject="Holiday hours",
            body="Closed on Thursday",
            clinician_id=None,
            recipient_ids=tuple(f"c{n:02}" for n in range(recipients)),
            clients=recipients,
            accepted_at=self._clock(),
        )
        self.announcements[KEY] = announcement
        return announcement

    def hold_elsewhere(self, until: datetime) -> None:
        current = self.leases.get(KEY)
        self.leases[KEY] = Lease("elsewhere", (current.epoch if current else 0) + 1, until)

    async def unfinished_announcements(self) -> list[str]:
        return [key for key, stored in self.announcements.items() if not stored.finished]

    async def claim_announcement(
        self, key: str, holder: str, now: datetime, lease: timedelta
    ) -> AnnouncementClaim:
        self.claims += 1
        stored = self.announcements.get(key)
        if stored is None or stored.finished:
            return AnnouncementClaim()
        current = self.leases.get(key, Lease("", 0, None))
        if current.until is not None and current.until > now and current.holder != holder:
            return AnnouncementClaim(held_until=current.until)
        self.leases[key] = Lease(holder, current.epoch + 1, now + lease)
        return AnnouncementClaim(replace(stored), current.epoch + 1)

    async def record_announcement_progress(
        self, announcement: Announcement, epoch: int, lease_until: datetime
    ) -> bool:
        lease = self.leases[KEY]
        if lease.epoch != epoch:
            return False
        self.announcements[KEY] = replace(announcement)
        lease.until = lease_until
        return True

    async def finish_announcement(self, announcement: Announcement, epoch: int) -> bool:
        if self.leases[KEY].epoch != epoch:
            return False
        self.announcements[KEY] = replace(announcement)
        return True

    async def release_announcement(self, key: str, epoch: int) -> None:
        self.released.append((key, epoch))
        if self.leases[key].epoch == epoch:
            self.leases[key].until = None


class Batches:
    """Records each batch; can fail one, hold one until an event, or call back after each."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.fail_at: int | None = None
        self.before_answer: asyncio.Event | None = None
        self.after_each: Callable[[int], None] = lambda sent: None
        self.started = asyncio.Event()

    async def __call__(self, announcement: Announcement, client_ids: Sequence[str]) -> int:
        self.started.set()
        if self.fail_at == len(self.sent):
            self.fail_at = None
            raise ConnectionError("database went away")
        if self.before_answer is not None:
            await self.before_answer.wait()
        self.sent.append(tuple(client_ids))
        self.after_each(len(self.sent))
        return len(client_ids)


def sender_for(store: FakeStore, batches: Batches, clock: Clock) -> AnnouncementSender:
    return AnnouncementSender(
        store,
        batches,
        clock,
        batch_size=3,
        lease_seconds=LEASE_SECONDS,
        poll_seconds=0.01,
        scan_seconds=1000.0,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> FakeStore:
    return FakeStore(clock)


async def test_an_accepted_announcement_is_sent_batch_by_batch(
    store: FakeStore, clock: Clock
) -> None:
    batches = Batches()
    sender = sender_for(store, batches, clock)
    assert await sender.tick() == 0  # the start-up scan: nothing yet
    accepted = store.accept(8)
    assert store.on_announcement_accepted == sender.note_accepted
    sender.note_accepted(KEY)

    assert await sender.tick() == 1
    assert batches.sent == [accepted.recipient_ids[:3], accepted.recipient_ids[3:6], ("c06", "c07")]
    done = store.announcements[KEY]
    assert (done.processed, done.conversations, done.finished) == (8, 8, True)
    assert done.finished_at == START
    assert await sender.tick() == 0


async def test_a_lease_held_elsewhere_is_left_alone_until_it_runs_out(
    store: FakeStore, clock: Clock
) -> None:
    batches = Batches()
    sender = sender_for(store, batches, clock)
    store.accept(4)
    store.hold_elsewhere(until=START + timedelta(seconds=30))
    assert await sender.tick() == 0
    assert (store.claims, batches.sent) == (1, [])

    clock.now = START + timedelta(seconds=20)
    assert await sender.tick() == 0
    assert store.claims == 1, "no scan before the lease runs out"

    clock.now = START + timedelta(seconds=31)
    assert await sender.tick() == 1
    assert len(batches.sent) == 2
    assert store.leases[KEY].epoch == 2


async def test_a_lease_lost_mid_way_stops_the_work_after_that_batch(
    store: FakeStore, clock: Clock
) -> None:
    batches = Batches()
    sender = sender_for(store, batches, clock)
    store.accept(9)
    sender.note_accepted(KEY)

    def taken_over(sent: int) -> None:
        if sent == 2:
            store.hold_elsewhere(until=clock() + timedelta(seconds=LEASE_SECONDS))

    batches.after_each = taken_over
    assert await sender.tick() == 0
    assert len(batches.sent) == 2
    stored = store.announcements[KEY]
    assert (stored.processed, stored.finished) == (3, False)  # the second batch is not its own


async def test_a_failed_batch_is_retried_from_the_last_recorded_one(
    store: FakeStore, clock: Clock
) -> None:
    batches = Batches()
    batches.fail_at = 1
    sender = sender_for(store, batches, clock)
    accepted = store.accept(7)
    sender.note_accepted(KEY)
    with pytest.raises(ConnectionError):
        await sender.tick()
    assert store.announcements[KEY].processed == 3

    assert await sender.tick() == 1
    assert batches.sent == [accepted.recipient_ids[:3], accepted.recipient_ids[3:6], ("c06",)]
    assert store.announcements[KEY].conversations == 7


async def test_stopping_gives_the_lease_up(store: FakeStore, clock: Clock) -> None:
    batches = Batches()
    batches.before_answer = asyncio.Event()  # never set: the first batch is under way
    sender = sender_for(store, batches, clock)
    store.accept(5)
    sender.start()
    await asyncio.wait_for(batches.started.wait(), timeout=5)
    await sender.stop()
    assert store.released == [(KEY, 1)]
    assert store.leases[KEY].until is None
    assert store.announcements[KEY].processed == 0
