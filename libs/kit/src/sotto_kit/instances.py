"""Which instances of a service are alive, so that looking for what a departed one left behind
happens when one departs, not on a timer.

Some leftovers can only be found by a query: outbox entries a process wrote and had not
published when it stopped, delayed reminders only it was waiting for. On FerretDB such a query
reads the whole collection (its SQLite backend uses no secondary index), and those collections
grow with the practice, so a scan every 30 seconds costs more every month. Instead each
instance keeps a heartbeat document in a small `instances` collection, and marks it stopped
when it stops cleanly. One that finds another's document marked stopped, or its heartbeat stale
(it crashed), deletes it and counts a departure; a user of the registry scans at start-up and
again once `departures` has grown since its last scan. Only the instance whose delete removed
the document counts it, so one departure costs the service one scan, not one per instance.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

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
        """Beat, then forget the instances that stopped or whose heartbeat is stale; how many
        of them this instance was the one to forget."""
        now = self._clock()
        await self.collection.update_one(
            {"_id": self.instance_id}, {"$set": {"beat_at": now}}, upsert=True
        )
        departed_filter = {
            "$or": [
                {"stopped_at": {"$exists": True}},
                {"beat_at": {"$lt": now - self._stale_after}},
            ]
        }
        departed = [
            document["_id"]
            async for document in self.collection.find(
                departed_filter, {"_id": 1}, max_time_ms=SCAN_TIME_LIMIT_MS
            )
            if document["_id"] != self.instance_id
        ]
        if not departed:
            return 0
        # The filter again: a peer that beat since the read above is alive after all.
        result = await self.collection.delete_many({"_id": {"$in": departed}, **departed_filter})
        if result.deleted_count:
            self.departures += result.deleted_count
            logger.info("instances departed", extra={"count": result.deleted_count})
        return result.deleted_count

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        """Stop beating and say so, for peers to look after what this instance leaves at their
        next check instead of once its heartbeat goes stale. Call it once this instance writes
        nothing more."""
        await self._periodic.stop()
        try:
            await self.collection.update_one(
                {"_id": self.instance_id}, {"$set": {"stopped_at": self._clock()}}
            )
        except PyMongoError:
            logger.warning("could not mark this instance stopped; peers will see it go stale")
