"""An instance's document in its service's registry (`sotto_kit.instances`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from sotto_kit.mongo import Document
from tests.support.waiting import eventually


async def registry_entry_running_then_stopped(
    registry: AsyncCollection[Document], running: AbstractAsyncContextManager[Any]
) -> tuple[Document, Document]:
    """The one instance's registry document while `running` runs it, and after it stopped."""
    async with running:
        (while_running,) = await eventually(lambda: registry.find({}).to_list(), until=bool)
    (after_stop,) = await registry.find({}).to_list()
    return while_running, after_stop
