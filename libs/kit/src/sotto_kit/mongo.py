"""MongoDB access with the PyMongo async API; store code stays within what FerretDB runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient
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


async def ensure_collections(database: AsyncDatabase[Document], names: Iterable[str]) -> None:
    """Create collections up front, before any concurrent traffic.

    FerretDB's SQLite backend can deadlock when a collection is created implicitly (first
    insert) while many operations run on the same database, so services create every
    collection they use at start-up.
    """
    existing = set(await database.list_collection_names())
    for name in names:
        if name not in existing:
            with contextlib.suppress(CollectionInvalid):  # another instance was first
                await database.create_collection(name)
