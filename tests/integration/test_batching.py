"""Group commit on the real database: concurrent writers share one command, and each learns the
outcome of its own document."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection

from sotto_kit.batching import DeleteBatcher, FindBatcher, InsertBatcher, UpdateBatcher
from sotto_kit.mongo import Document, ensure_collections
from tests.support.infra import Infrastructure


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def commands() -> CommandCounter:
    return CommandCounter()


@pytest.fixture
async def documents(
    infra: Infrastructure, namespace: str, commands: CommandCounter
) -> AsyncIterator[AsyncCollection[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[commands]
    )
    collection = client[f"{namespace}_batching"]["documents"]
    await ensure_collections([collection])
    await collection.insert_one({"_id": "taken", "n": 0})
    commands.sent.clear()
    yield collection
    await client.drop_database(f"{namespace}_batching")
    await client.close()


async def test_concurrent_inserts_share_commands_and_report_duplicates(
    documents: AsyncCollection[Document], commands: CommandCounter
) -> None:
    inserts = InsertBatcher(documents)
    names = [f"d{i}" for i in range(100)]

    outcomes = await asyncio.gather(
        *(inserts.insert({"_id": name, "n": 0}) for name in [*names, "taken"])
    )

    assert outcomes == [True] * 100 + [False]
    assert await documents.count_documents({}) == 101
    assert commands.sent["insert"] <= 3


async def test_concurrent_updates_share_commands_and_each_lands(
    documents: AsyncCollection[Document], commands: CommandCounter
) -> None:
    await documents.insert_many([{"_id": f"d{i}", "n": 0} for i in range(150)])
    updates = UpdateBatcher(documents)
    commands.sent.clear()

    await asyncio.gather(
        *(updates.update(f"d{i}", {"$set": {"n": i}, "$unset": {"x": ""}}) for i in range(150))
    )

    stored = {document["_id"]: document["n"] async for document in documents.find({})}
    assert all(stored[f"d{i}"] == i for i in range(150))
    assert 5 <= commands.sent["update"] <= 12  # batches of at most 32 statements


async def test_a_failed_update_is_never_reported_as_done(
    documents: AsyncCollection[Document],
) -> None:
    """MongoDB fails only the bad statement's caller. FerretDB stops the command at the bad
    statement and answers without `nModified`, so every caller of that batch gets an error and
    redoes its write (all batched writes are idempotent or re-checked by their callers)."""
    await documents.insert_many([{"_id": "a", "n": 1}, {"_id": "b", "n": 1}])
    updates = UpdateBatcher(documents)

    good, bad = await asyncio.gather(
        updates.update("a", {"$inc": {"n": 1}}),
        updates.update("b", {"$inc": {"n": "not a number"}}),
        return_exceptions=True,
    )

    assert isinstance(bad, Exception)
    assert (await documents.find_one({"_id": "b"}) or {})["n"] == 1
    if good is None:
        assert (await documents.find_one({"_id": "a"}) or {})["n"] == 2
    else:
        assert isinstance(good, Exception)


async def test_concurrent_deletes_share_commands(
    documents: AsyncCollection[Document], commands: CommandCounter
) -> None:
    await documents.insert_many([{"_id": f"d{i}"} for i in range(40)])
    deletes = DeleteBatcher(documents)
    commands.sent.clear()

    await asyncio.gather(*(deletes.delete(f"d{i}") for i in range(40)))

    assert await documents.count_documents({}) == 1
    assert commands.sent["delete"] <= 2


async def test_concurrent_reads_share_commands_and_each_gets_its_own_document(
    documents: AsyncCollection[Document], commands: CommandCounter
) -> None:
    await documents.insert_many([{"_id": f"d{i}", "n": i, "tags": ["x"]} for i in range(60)])
    reads = FindBatcher(documents, projection={"tags": 0})
    commands.sent.clear()
    wanted = [f"d{i}" for i in range(60)] + ["d7", "d7", "missing"]

    found = await asyncio.gather(*(reads.find(key) for key in wanted))

    assert [document and document["n"] for document in found[:60]] == list(range(60))
    assert all("tags" not in document for document in found if document)
    assert found[-1] is None
    assert found[7] == found[60] == found[61]
    assert found[7] is not found[60]  # one caller's changes never show in another's copy
    assert commands.sent["find"] <= 2


async def test_a_read_sees_every_write_finished_before_it_was_asked(
    documents: AsyncCollection[Document],
) -> None:
    reads = FindBatcher(documents)
    before = asyncio.create_task(reads.find("taken"))  # on its way while the update runs
    await documents.update_one({"_id": "taken"}, {"$set": {"n": 1}})

    after = await reads.find("taken")

    assert after is not None
    assert after["n"] == 1
    assert (await before) is not None
