"""The MongoDB-compatible server the tests run on, as the stores rely on it.

`scripts/infra` builds FerretDB with patches that push an `_id` string condition down to
SQLite even when the filter has other fields too (optimistic updates such as
`{"_id": id, "version": n}`). The server must still apply the whole filter: a stale version or
a mismatched field matches nothing. Another patch lets one `update` command carry any number
of statements (a bulk write): unpatched, 100 or more waited forever for a database connection.
And `{_id: {$in: [...]}}` is looked up by index; it must still match exactly what MongoDB does.
On FerretDB's PostgreSQL backend (`SOTTO_FERRETDB_HANDLER=postgresql`) two more patches compare
`_id` by equality and push `$in` down, so its `_id` index serves them: the same assertions
cover them. A last patch makes each update and findAndModify read and write the document as one
step (upstream lost concurrent updates). And a string condition on any other top-level field
is checked by SQLite in the stored JSON before FerretDB decodes a document, so a scan skips
what cannot match at a fraction of the cost. The same assertions hold on MongoDB.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ExecutionTimeout

from sotto_kit.mongo import (
    COMMAND_LOG_ENV,
    SCAN_TIME_LIMIT_MS,
    Document,
    connect,
    ensure_collections,
)
from tests.support.infra import Infrastructure


@pytest.fixture
async def documents(
    mongo: AsyncMongoClient[Document], namespace: str
) -> AsyncIterator[AsyncCollection[Document]]:
    collection = mongo[f"{namespace}_server"]["documents"]
    await ensure_collections([collection])
    await collection.insert_many(
        [{"_id": f"d{i}", "version": 1, "state": "open", "n": i} for i in range(50)]
    )
    yield collection
    await mongo.drop_database(f"{namespace}_server")


async def test_id_with_other_fields_applies_the_whole_filter(
    documents: AsyncCollection[Document],
) -> None:
    assert await documents.find_one({"_id": "d7", "version": 1}) is not None
    assert await documents.find_one({"_id": "d7", "version": 2}) is None
    assert await documents.find_one({"_id": "d7", "state": {"$ne": "open"}}) is None

    updated = await documents.update_one({"_id": "d7", "version": 1}, {"$set": {"version": 2}})
    stale = await documents.update_one({"_id": "d7", "version": 1}, {"$set": {"version": 3}})
    assert (updated.modified_count, stale.matched_count) == (1, 0)
    assert (await documents.find_one({"_id": "d7"}) or {})["version"] == 2

    missed = await documents.delete_one({"_id": "d8", "state": "closed"})
    deleted = await documents.delete_one({"_id": "d8", "state": "open"})
    assert (missed.deleted_count, deleted.deleted_count) == (0, 1)

    assert await documents.count_documents({"_id": "d9", "n": 9}) == 1
    assert await documents.count_documents({"_id": "d9", "n": 10}) == 0
    assert await documents.count_documents({"state": "open"}) == 49


async def test_one_update_command_carries_many_statements(
    documents: AsyncCollection[Document],
) -> None:
    statements = [UpdateOne({"_id": f"d{i % 50}"}, {"$inc": {"version": 1}}) for i in range(250)]
    result = await asyncio.wait_for(documents.bulk_write(statements, ordered=False), 30)
    assert result.modified_count == 250
    versions = [document["version"] async for document in documents.find({})]
    assert versions == [6] * 50


async def test_id_in_matches_exactly_the_listed_documents(
    documents: AsyncCollection[Document],
) -> None:
    listed = {"_id": {"$in": ["d3", "d5", "d7", "missing"]}}
    found = sorted([document["_id"] async for document in documents.find(listed)])
    assert found == ["d3", "d5", "d7"]
    assert await documents.count_documents({**listed, "n": {"$gt": 4}}) == 2
    assert await documents.count_documents({"_id": {"$in": ["d1", 2]}}) == 1
    assert await documents.count_documents({"_id": {"$in": []}}) == 0
    assert await documents.count_documents({"_id": {"$nin": ["d1"]}}) == 49

    updated = await documents.update_many(listed, {"$set": {"state": "closed"}})
    assert updated.modified_count == 3
    assert await documents.count_documents({"state": "closed"}) == 3

    deleted = await documents.delete_many({"_id": {"$in": ["d3", "d4"]}})
    assert deleted.deleted_count == 2
    assert await documents.count_documents({}) == 48


async def test_string_filters_on_other_fields_match_exactly_what_mongodb_does(
    mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """A string condition on a top-level field is pushed down to SQLite as "the stored JSON
    holds that string": it may only skip documents that cannot match."""
    collection = mongo[f"{namespace}_fields"]["threads"]
    await ensure_collections([collection])
    await collection.insert_many(
        [
            {"_id": "plain", "owner": "ana", "kind": "client"},
            {"_id": "listed", "owner": ["bo", "ana"], "kind": "client"},
            {"_id": "objects", "owner": [{"name": "ana"}], "kind": "client"},
            {"_id": "inside", "owner": {"name": "ana"}, "kind": "client"},
            {"_id": "number", "owner": 5, "kind": "staff"},
            {"_id": "quoted", "owner": 'a "b" \\ c \u00e9', "kind": "staff"},
            {"_id": "missing", "kind": "staff"},
            {"_id": "dashed", "odd-name": "ana", "kind": "staff"},
            {"_id": "elsewhere", "note": "ana", "owner": "bo", "kind": "staff"},
            {"_id": "markup", "owner": "<a&b> \u2028 \U0001f600", "kind": "staff"},
        ]
    )

    async def ids(query: Document) -> list[str]:
        return sorted([document["_id"] async for document in collection.find(query)])

    assert await ids({"owner": "ana"}) == ["listed", "plain"]
    assert await ids({"owner": "ana", "kind": "client"}) == ["listed", "plain"]
    assert await ids({"owner": "ana", "kind": "staff"}) == []
    assert await ids({"owner": "5"}) == []
    assert await ids({"owner": 5}) == ["number"]
    assert await ids({"owner": 'a "b" \\ c \u00e9'}) == ["quoted"]
    assert await ids({"owner": "<a&b> \u2028 \U0001f600"}) == ["markup"]
    assert await ids({"owner": "ana", "$comment": "not a condition"}) == ["listed", "plain"]
    assert await ids({"owner.name": "ana"}) == ["inside", "objects"]
    assert await ids({"odd-name": "ana"}) == ["dashed"]
    assert await ids({"owner": ["bo", "ana"]}) == ["listed"]
    assert await ids({"owner": {"$ne": "ana"}, "kind": "client"}) == ["inside", "objects"]
    assert await ids({"_id": "listed", "owner": "ana"}) == ["listed"]
    assert await ids({"_id": "plain", "owner": "bo"}) == []
    assert await collection.count_documents({"owner": "ana"}) == 2

    updated = await collection.update_many({"owner": "ana"}, {"$set": {"seen": True}})
    assert updated.modified_count == 2
    assert await ids({"seen": True}) == ["listed", "plain"]
    deleted = await collection.delete_many({"kind": "client", "owner": "bo"})
    assert deleted.deleted_count == 1
    assert await ids({"kind": "client"}) == ["inside", "objects", "plain"]
    await mongo.drop_database(f"{namespace}_fields")


async def test_command_log_records_shapes_not_values(
    infra: Infrastructure,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "commands.jsonl"
    monkeypatch.setenv(COMMAND_LOG_ENV, str(log))
    client = connect(infra.mongodb_url)
    collection = client[f"{namespace}_shapes"]["people"]
    try:
        await collection.insert_one({"_id": "p1", "email": "someone@example.org"})
        await collection.find_one({"_id": "p1", "email": "someone@example.org"})
    finally:
        await client.drop_database(f"{namespace}_shapes")
        await client.close()

    written = log.read_text()
    assert "someone@example.org" not in written
    shapes = [json.loads(line) for line in written.splitlines()]
    assert {"command": "find", "collection": "people", "filter": "_id,email"}.items() <= next(
        shape for shape in shapes if shape["command"] == "find"
    ).items()


async def test_instances_starting_together_all_get_their_collections(
    mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """Replicas of a service start at once on a fresh database: each finds the collections
    missing and creates them; the ones that lose the race carry on instead of failing."""
    database = mongo[f"{namespace}_startup"]
    collections = [database[name] for name in ("deliveries", "send_windows", "outbox")]

    await asyncio.gather(*(ensure_collections(collections) for _ in range(6)))

    created = set(await database.list_collection_names())
    assert created >= {"deliveries", "send_windows", "outbox"}


async def test_concurrent_updates_of_one_document_each_apply_once(
    documents: AsyncCollection[Document], infra: Infrastructure
) -> None:
    """Each update reads and writes the document as one step, as on MongoDB: concurrent
    increments all count, and of many writers expecting one version exactly one wins."""
    clients = [connect(infra.mongodb_url) for _ in range(4)]
    try:
        collections = [client[documents.database.name]["documents"] for client in clients]
        increments = [
            collection.update_one({"_id": "d1"}, {"$inc": {"n": 1}})
            for collection in collections
            for _ in range(25)
        ]
        claims = [
            collections[i % 4].update_one(
                {"_id": "d2", "version": 1}, {"$set": {"version": 2, "winner": i}}
            )
            for i in range(20)
        ]
        uses = [
            collections[i % 4].find_one_and_update(
                {"_id": "d3", "state": "open"}, {"$set": {"state": "used", "user": i}}
            )
            for i in range(20)
        ]
        _, claimed, used = await asyncio.gather(
            asyncio.gather(*increments), asyncio.gather(*claims), asyncio.gather(*uses)
        )
    finally:
        for client in clients:
            await client.close()
    assert (await documents.find_one({"_id": "d1"}) or {})["n"] == 1 + 100
    assert sum(result.modified_count for result in claimed) == 1
    assert sum(1 for found in used if found is not None) == 1


async def test_the_server_stops_a_scan_past_its_time_limit(
    mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """Scans carry a time limit (`SCAN_TIME_LIMIT_MS`, sent as `maxTimeMS`) and the server
    stops them there: FerretDB otherwise runs a query the client gave up on to the end, and
    scans retried on every redelivery pile up in it."""
    notes = mongo[f"{namespace}_slow"]["notes"]
    slow_scan: Document = {"topic": {"$regex": "^topic 9$"}}
    try:
        await notes.insert_many(
            [{"_id": f"n{i}", "topic": f"topic {i % 97}", "n": i} for i in range(10_000)]
        )
        with pytest.raises(ExecutionTimeout):
            await notes.find_one(slow_scan, sort=[("n", -1)], max_time_ms=20)
        with pytest.raises(ExecutionTimeout):
            await notes.count_documents(slow_scan, maxTimeMS=20)
        assert await notes.count_documents(slow_scan, maxTimeMS=SCAN_TIME_LIMIT_MS) == 103
    finally:
        await mongo.drop_database(f"{namespace}_slow")
