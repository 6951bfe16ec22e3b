"""Run a coroutine now and then every few seconds until stopped; failures are logged, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._job = job
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._job()
            except PyMongoError:
                logger.warning("database unavailable; retrying", extra={"job": self._name})
            except Exception:  # a background job must outlive any single failure
                logger.exception("periodic job failed; retrying", extra={"job": self._name})
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
