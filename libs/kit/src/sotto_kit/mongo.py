"""MongoDB access with the PyMongo async API; store code stays within what FerretDB runs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, CollectionInvalid, OperationFailure, PyMongoError

Document = dict[str, Any]


COMMAND_LOG_ENV = "SOTTO_MONGO_COMMAND_LOG"
NAMESPACE_EXISTS = 48
DUPLICATE_KEY = 11000
# For every read whose filter is more than an `_id` (a scan on FerretDB): the server stops it
# after this long (`max_time_ms=` on find, `maxTimeMS=` on aggregate, count and findAndModify),
# before the client's socket times out. FerretDB otherwise runs a query the client gave up on
# to the end, and a scan retried on every redelivery piles up in it.
SCAN_TIME_LIMIT_MS = 12_000


def connect(url: str, *, timeout_ms: int = 3000) -> AsyncMongoClient[Document]:
    """A client that reconnects by itself; operations fail fast while the server is away.

    Not PyMongo's `timeoutMS`, which would tell the server each operation's time left: with it
    set, server selection waits out the whole operation time instead of `timeout_ms`, so an
    outage would hold every request for that long; scans carry `SCAN_TIME_LIMIT_MS` instead.
    """
    command_log = os.environ.get(COMMAND_LOG_ENV)
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 5, SCAN_TIME_LIMIT_MS + 3_000),
        tz_aware=True,
        uuidRepresentation="standard",
        event_listeners=[CommandShapeLog(command_log)] if command_log else [],
    )


class CommandShapeLog(monitoring.CommandListener):
    """A diagnostic (bench/db_ops.py): each command's database, collection, filter field names,
    how many `_id`s a find asks for, and duration, appended as JSON lines; never a value, so
    nothing private is written."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._started: dict[int, dict[str, Any]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = dict(event.command)
        self._started[event.request_id] = {
            "db": event.database_name,
            "command": event.command_name,
            "collection": str(command.get(event.command_name, "")),
            "filter": _filter_shape(event.command_name, command),
            "time_limited": "maxTimeMS" in command,
            "ids": _ids_asked_for(event.command_name, command),
        }

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finish(event.request_id, event.duration_micros, ok=True)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finish(event.request_id, event.duration_micros, ok=False)

    def _finish(self, request_id: int, micros: int, *, ok: bool) -> None:
        record = self._started.pop(request_id, None)
        if record is None:
            return
        line = json.dumps({**record, "micros": micros, "ok": ok}) + "\n"
        with open(self._path, "a") as log:
            log.write(line)


def _filter_shape(name: str, command: Document) -> str:
    def keys(query: Any) -> str:
        return ",".join(sorted(query)) if isinstance(query, dict) else ""

    if name == "aggregate":
        stages = command.get("pipeline") or [{}]
        return keys(stages[0].get("$match", {}))
    if name in ("find", "count", "findAndModify"):
        return keys(command.get("filter", command.get("query", {})))
    if name == "update":
        return "|".join(sorted({keys(u.get("q")) for u in command.get("updates", [])}))
    if name == "delete":
        return "|".join(sorted({keys(d.get("q")) for d in command.get("deletes", [])}))
    if name == "insert":
        return f"n={len(command.get('documents', []))}"
    return ""


def _ids_asked_for(name: str, command: Document) -> int | None:
    """1 for a find by one `_id`, N for `_id: {$in: [N values]}`, None for any other command."""
    if name != "find":
        return None
    wanted = command.get("filter", {}).get("_id")
    if isinstance(wanted, dict) and isinstance(wanted.get("$in"), list):
        return len(wanted["$in"])
    return None if wanted is None or isinstance(wanted, dict) else 1


async def is_reachable(database: AsyncDatabase[Document]) -> bool:
    try:
        await database.command("ping")
    except PyMongoError:
        return False
    return True


async def wait_until_reachable(database: AsyncDatabase[Document], at_most_seconds: float) -> None:
    """Return once the database answers a ping, or after about `at_most_seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + at_most_seconds
    while not await is_reachable(database):
        if loop.time() >= deadline:
            return
        await asyncio.sleep(1.0)


async def ensure_collections(collections: Iterable[AsyncCollection[Document]]) -> None:
    """Create collections up front, before any concurrent traffic.

    FerretDB's SQLite backend can deadlock when a collection is created implicitly (first
    insert) while many operations run on the same database, so every store creates each
    collection it uses at start-up, before its consumers run.
    """
    existing: dict[str, set[str]] = {}
    for collection in collections:
        database = collection.database
        if database.name not in existing:
            existing[database.name] = set(await database.list_collection_names())
        if collection.name not in existing[database.name]:
            try:
                await database.create_collection(collection.name)
            except CollectionInvalid:  # another instance created it since the listing
                pass
            except OperationFailure as error:  # ... or while this one was creating it
                if error.code != NAMESPACE_EXISTS:
                    raise
            existing[database.name].add(collection.name)


async def insert_new(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> set[Any]:
    """Insert what is not there yet (unique `_id`); returns the ids inserted."""
    if not documents:
        return set()
    inserted = {document["_id"] for document in documents}
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(item.get("code") != DUPLICATE_KEY for item in errors):
            raise
        inserted -= {documents[item["index"]]["_id"] for item in errors}
    return inserted
