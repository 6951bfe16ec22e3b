"""Polls for due unread reminders; the claim is atomic, so several instances never double up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sotto_contracts.base import Message
from sotto_conversations.adapters.store import ConversationStore
from sotto_kit.mongo import Document
from sotto_kit.periodic import Periodic


class ReminderScheduler:
    def __init__(
        self,
        store: ConversationStore,
        event_for: Callable[[Document], Message],
        clock: Callable[[], datetime],
        *,
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._event_for = event_for
        self._clock = clock
        self._periodic = Periodic("unread-reminders", self.run_once, interval_seconds)

    async def run_once(self) -> int:
        """Emit every reminder due now; returns how many this instance claimed."""
        claimed = 0
        while (
            claim_id := await self._store.claim_due_reminder(self._clock(), self._event_for)
        ) is not None:
            if claim_id:
                claimed += 1
                await self._store.flush_claim(claim_id)
        return claimed

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
