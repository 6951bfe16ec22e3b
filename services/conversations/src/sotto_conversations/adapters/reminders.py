"""Emits delayed unread reminders when they come due; the claim is atomic, so several instances
never double up.

Reminders due at once (delay 0, announcements) never wait for this: the handlers emit them
right after the save (`ConversationStore.emit_reminders`). Looking for due reminders reads the
whole reminders collection on FerretDB's SQLite backend (it uses no secondary index), so the
scheduler does not query every tick: it queries when a reminder it knows of comes due (those
this instance scheduled, and the next one the last query saw), at start-up (reminders from
before a restart), after another instance departed (`Instances`: reminders only it knew of),
and otherwise every `scan_seconds`, a safety net.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sotto_contracts.base import Message
from sotto_kit.instances import Instances
from sotto_kit.mongo import Document
from sotto_kit.periodic import Periodic


class ReminderStore(Protocol):
    """What the scheduler needs of `ConversationStore`."""

    on_reminder_scheduled: Callable[[datetime], None] | None

    async def claim_due_reminders(
        self, now: datetime, event_for: Callable[[Document], Message], limit: int
    ) -> tuple[int, int, datetime | None]: ...


class ReminderScheduler:
    def __init__(
        self,
        store: ReminderStore,
        event_for: Callable[[Document], Message],
        clock: Callable[[], datetime],
        *,
        interval_seconds: float,
        scan_seconds: float = 600.0,
        batch_size: int = 500,
        instances: Instances | None = None,
    ) -> None:
        self._store = store
        self._event_for = event_for
        self._clock = clock
        self._scan_seconds = scan_seconds
        self._batch_size = batch_size
        self._next_due: datetime | None = None
        self._last_query: float | None = None
        self._instances = instances
        self._departures_seen = 0
        store.on_reminder_scheduled = self.note_due
        self._periodic = Periodic("unread-reminders", self.tick, interval_seconds)

    def note_due(self, due_at: datetime) -> None:
        """A pending reminder comes due at `due_at`: look for it then."""
        if self._next_due is None or due_at < self._next_due:
            self._next_due = due_at

    async def tick(self) -> int:
        """Query only when something known is due or the periodic scan is."""
        scan_due = (
            self._last_query is None
            or time.monotonic() - self._last_query >= self._scan_seconds
            or self._departures() > self._departures_seen
        )
        known_due = self._next_due is not None and self._next_due <= self._clock()
        if not (scan_due or known_due):
            return 0
        return await self.run_once()

    async def run_once(self) -> int:
        """Emit every reminder due now; returns how many this instance claimed."""
        started, departures = time.monotonic(), self._departures()
        known, self._next_due = self._next_due, None  # new ones note themselves meanwhile
        claimed = 0
        try:
            while True:
                due, emitted, later = await self._store.claim_due_reminders(
                    self._clock(), self._event_for, self._batch_size
                )
                claimed += emitted
                if due < self._batch_size:
                    break
        except BaseException:
            if known is not None:
                self.note_due(known)
            raise
        self._last_query, self._departures_seen = started, departures
        if later is not None:
            self.note_due(later)
        return claimed

    def _departures(self) -> int:
        return self._instances.departures if self._instances else 0

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
