"""Polls for due unread reminders; the claim is atomic, so several instances never double up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from pymongo.errors import PyMongoError

from sotto_contracts.base import Message
from sotto_conversations.adapters.store import ConversationStore
from sotto_kit.mongo import Document

logger = logging.getLogger(__name__)


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
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

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

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except (PyMongoError, ConnectionError, TimeoutError, RuntimeError):
                logger.warning("reminder sweep failed; retrying", exc_info=True)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="unread-reminders")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
