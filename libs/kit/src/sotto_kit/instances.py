"""Which instances of a service are alive, so that looking for what a departed one left behind
happens when one departs, not on a timer.

Some leftovers can only be found by a query: outbox entries a process wrote and had not
published when it stopped, delayed reminders only it was waiting for. On FerretDB such a query
reads the whole collection (its SQLite backend uses no secondary index), and those collections
grow with the practice, so a scan every 30 seconds costs more every month. Instead each
instance keeps a heartbeat document in a small `instances` collection. One that finds another's
heartbeat stale (it stopped, cleanly or not) deletes it and counts a departure; a user of the
registry scans at start-up and again once `departures` has grown since its last scan. Two
instances may both count the same departure and both scan: harmless, scans only republish.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.base import utc_now
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections
from sotto_kit.periodic import Periodic
from sotto_kit.settings import RelaySettings

INSTANCES = "instances"

logger = logging.getLogger(__name__)


class Instances:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        heartbeat_seconds: float = 5.0,
        stale_after_seconds: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.collection = collection
        self.instance_id = uuid.uuid4().hex
        self.departures = 0
        """Departed instances this one has seen since it started."""
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._clock = clock
        self._periodic = Periodic("instances", self.check, heartbeat_seconds)

    @classmethod
    def of_service(cls, database: AsyncDatabase[Document], settings: RelaySettings) -> Instances:
        return cls(
            database[INSTANCES],
            heartbeat_seconds=settings.instance_heartbeat_seconds,
            stale_after_seconds=settings.instance_stale_after_seconds,
        )

    async def ensure_collection(self) -> None:
        await ensure_collections([self.collection])

    async def check(self) -> int:
        """Beat, then forget the instances whose heartbeat is stale; how many there were."""
        now = self._clock()
        await self.collection.update_one(
            {"_id": self.instance_id}, {"$set": {"beat_at": now}}, upsert=True
        )
        stale_before = now - self._stale_after
        departed = [
            document["_id"]
            async for document in self.collection.find({}, max_time_ms=SCAN_TIME_LIMIT_MS)
            if document["_id"] != self.instance_id and document["beat_at"] < stale_before
        ]
        if departed:
            await self.collection.delete_many({"_id": {"$in": departed}})
            self.departures += len(departed)
            logger.info("instances departed", extra={"count": len(departed)})
        return len(departed)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
