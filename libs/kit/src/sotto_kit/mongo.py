"""MongoDB access with the PyMongo async API; store code stays within what FerretDB runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, PyMongoError

Document = dict[str, Any]


def connect(url: str, *, timeout_ms: int = 3000) -> AsyncMongoClient[Document]:
    """A client that reconnects by itself; operations fail fast while the server is away."""
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 5, 10_000),
        tz_aware=True,
        uuidRepresentation="standard",
    )


async def is_reachable(database: AsyncDatabase[Document]) -> bool:
    try:
        await database.command("ping")
    except PyMongoError:
        return False
    return True


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
            with contextlib.suppress(CollectionInvalid):  # another instance was first
                await database.create_collection(collection.name)
            existing[database.name].add(collection.name)
