"""Sends accepted announcements in the background, batch by batch, and finishes the ones an
instance left unfinished (a crash, a restart, a scale-down).

The instance that accepts an announcement starts on it at its next tick. An instance works on
an announcement only while it holds its lease (`ConversationStore.claim_announcement`), renewed
by the progress recorded after each batch; a lease whose holder died runs out after
`lease_seconds` and the next instance to look takes over from the last recorded batch. Looking
for unfinished announcements reads the whole collection on FerretDB, so that query runs at
start-up, every `scan_seconds`, and when a lease this instance saw held elsewhere runs out.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pymongo.errors import PyMongoError

from sotto_conversations.adapters.store import AnnouncementClaim
from sotto_conversations.domain import Announcement
from sotto_kit.periodic import Periodic

SendBatch = Callable[[Announcement, Sequence[str]], Awaitable[int]]


class AnnouncementStore(Protocol):
    """What the sender needs of `ConversationStore`."""

    on_announcement_accepted: Callable[[str], None] | None

    async def unfinished_announcements(self) -> list[str]: ...

    async def claim_announcement(
        self, key: str, holder: str, now: datetime, lease: timedelta
    ) -> AnnouncementClaim: ...

    async def record_announcement_progress(
        self, announcement: Announcement, epoch: int, lease_until: datetime
    ) -> bool: ...

    async def finish_announcement(self, announcement: Announcement, epoch: int) -> bool: ...

    async def release_announcement(self, key: str, epoch: int) -> None: ...


class AnnouncementSender:
    def __init__(
        self,
        store: AnnouncementStore,
        send_batch: SendBatch,
        clock: Callable[[], datetime],
        *,
        batch_size: int,
        lease_seconds: float,
        poll_seconds: float,
        scan_seconds: float,
    ) -> None:
        self._store = store
        self._send_batch = send_batch
        self._clock = clock
        self._batch_size = batch_size
        self._lease = timedelta(seconds=lease_seconds)
        self._scan_seconds = scan_seconds
        self._holder = uuid.uuid4().hex
        self._waiting: dict[str, None] = {}  # announcement keys to try, in order
        self._look_again_at: datetime | None = None
        self._last_scan: float | None = None
        self._working: tuple[str, int] | None = None
        store.on_announcement_accepted = self.note_accepted
        self._periodic = Periodic("announcements", self.tick, poll_seconds)

    def note_accepted(self, key: str) -> None:
        self._waiting[key] = None

    def _look_again(self, at: datetime) -> None:
        if self._look_again_at is None or at < self._look_again_at:
            self._look_again_at = at

    async def tick(self) -> int:
        """Work what was accepted here; query for unfinished ones when a scan or lease is due.
        Returns how many announcements this instance finished."""
        scan_due = (
            self._last_scan is None or time.monotonic() - self._last_scan >= self._scan_seconds
        )
        lease_due = self._look_again_at is not None and self._look_again_at <= self._clock()
        if scan_due or lease_due:
            self._last_scan = time.monotonic()
            self._look_again_at = None
            for key in await self._store.unfinished_announcements():
                self._waiting.setdefault(key, None)
        finished = 0
        while self._waiting:
            key = next(iter(self._waiting))
            finished += await self.send(key)  # on failure it stays waiting: the next tick retries
            self._waiting.pop(key, None)
        return finished

    async def send(self, key: str) -> bool:
        """Send one announcement to the end if no other instance holds it; True if finished."""
        claim = await self._store.claim_announcement(key, self._holder, self._clock(), self._lease)
        if claim.held_until is not None:
            self._look_again(claim.held_until)
        announcement = claim.announcement
        if announcement is None:
            return False
        self._working = (key, claim.epoch)
        try:
            while batch := announcement.next_batch(self._batch_size):
                conversations = await self._send_batch(announcement, batch)
                announcement.record_batch(len(batch), conversations)
                renewed_until = self._clock() + self._lease
                if not await self._store.record_announcement_progress(
                    announcement, claim.epoch, renewed_until
                ):
                    return False  # the lease ran out and another instance took over
            announcement.finish(self._clock())
            return await self._store.finish_announcement(announcement, claim.epoch)
        finally:
            self._working = None

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        """Stop, and give up the lease of an unfinished announcement so another instance (or
        this one restarted) goes on at once instead of when the lease runs out."""
        working = self._working
        await self._periodic.stop()
        if working is not None:
            with contextlib.suppress(PyMongoError):
                await self._store.release_announcement(*working)
