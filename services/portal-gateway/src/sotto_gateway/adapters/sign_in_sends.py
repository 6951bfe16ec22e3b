"""How many sign-in emails each address had lately, counted by every gateway instance together.

Time is cut into windows of one period. A sign-in email claims a numbered slot of the current
window by inserting the slot's `_id`: a unique `_id` is the one write that is atomic on
FerretDB too (it rewrites whole documents on update, see `sotto_kit.locks`), so concurrent
requests never claim one slot twice. Only the slots the previous window left free can be
claimed, so no span of one period holds more than `limit` emails; a burst keeps the address
quiet for one to two periods. Addresses are stored keyed-hashed, never in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from sotto_contracts.base import utc_now
from sotto_gateway.domain import normalize_email, token_digest
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections


class SignInSends:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        key: bytes,
        limit: int,
        period: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sends = database["sign_in_sends"]
        self._key = key
        self._limit = limit
        self._period_seconds = period.total_seconds()
        self._clock = clock
        self._swept_before = 0

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self.sends]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.sends.create_index("address")
        await self.sends.create_index("window")

    async def claim(self, email: str) -> bool:
        """Count one sign-in email to `email`; False, counting nothing, if it had its share."""
        address = token_digest(self._key, normalize_email(email))
        window = int(self._clock().timestamp() // self._period_seconds)
        recent = [
            document
            async for document in self.sends.find(
                {"address": address, "window": {"$gte": window - 1}},
                {"_id": 1, "window": 1},
                max_time_ms=SCAN_TIME_LIMIT_MS,
            )
        ]
        taken = {document["_id"] for document in recent}
        left_by_previous = sum(1 for document in recent if document["window"] == window - 1)
        # a flooded address is refused after this read, without a write
        for number in range(left_by_previous, self._limit):
            slot = f"{address}:{window}:{number}"
            if slot in taken:
                continue
            try:
                await self.sends.insert_one({"_id": slot, "address": address, "window": window})
            except DuplicateKeyError:
                continue
            await self._sweep(window)
            return True
        return False

    async def _sweep(self, window: int) -> None:
        """Drop the windows no claim reads any more; once per window and instance."""
        if self._swept_before < window - 1:
            self._swept_before = window - 1
            await self.sends.delete_many({"window": {"$lt": window - 1}})
