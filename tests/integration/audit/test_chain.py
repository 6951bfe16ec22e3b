"""The chain: tampering is detected, two instances keep one chain, retention prunes safely."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit import cli
from sotto_audit.adapters.store import AuditStore
from sotto_audit.config import AuditSettings
from sotto_audit.domain import ChainHead, Draft, Watermark, milliseconds, seal
from sotto_audit.handlers import prune, verify_chain
from sotto_contracts.audit import ChainVerification, VerifyChain
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.gateway import LinkOpened
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document
from tests.integration.audit.conftest import CHECKPOINT_KEY, serve_audit
from tests.integration.audit.samples import access_draft
from tests.support.amqp import Amqp, publish_many
from tests.support.infra import Infrastructure
from tests.support.waiting import eventually

KEY = CHECKPOINT_KEY.encode()


def _opened(practice_id: str, number: int) -> LinkOpened:
    return LinkOpened(
        practice_id=practice_id,
        link_id=f"link-{number}",
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id=f"client-{number % 7}"),
        conversation_id=f"conv-{number % 5}",
    )


async def _publish(amqp: Amqp, practice_id: str, count: int) -> None:
    events = [_opened(practice_id, n) for n in range(count)]
    await publish_many(amqp.url, amqp.topology, events)


async def _stored(records: AsyncCollection[Document], practice_id: str, count: int) -> None:
    await eventually(
        lambda: records.count_documents({"practice_id": practice_id}),
        until=lambda n: n == count,
        timeout=60,
        what=f"{count} records of {practice_id}",
    )


async def _swap_sequences(
    records: AsyncCollection[Document], practice_id: str, a: int, b: int
) -> None:
    await records.update_one(
        {"practice_id": practice_id, "sequence": a}, {"$set": {"sequence": -1}}
    )
    await records.update_one({"practice_id": practice_id, "sequence": b}, {"$set": {"sequence": a}})
    await records.update_one(
        {"practice_id": practice_id, "sequence": -1}, {"$set": {"sequence": b}}
    )


async def _insert_forged(records: AsyncCollection[Document], practice_id: str, at: int) -> None:
    """A forger who knows the algorithm: shift later records and seal a valid-looking one."""
    last = await records.count_documents({"practice_id": practice_id})
    for sequence in range(last, at - 1, -1):
        await records.update_one(
            {"practice_id": practice_id, "sequence": sequence}, {"$inc": {"sequence": 1}}
        )
    before = await records.find_one({"practice_id": practice_id, "sequence": at - 1})
    assert before is not None
    (forged,) = seal(
        [access_draft(practice_id, "forged")], ChainHead(at - 1, before["hash"]), datetime.now(UTC)
    )
    await records.insert_one(asdict(forged) | {"category": forged.category.value})


async def test_each_tampering_is_detected_at_its_record(
    settings: AuditSettings, amqp: Amqp, records: AsyncCollection[Document], rpc: RpcClient
) -> None:
    practices = [
        *("intact", "modified", "deleted", "inserted", "reordered", "truncated"),
        *("truncated-head-rewritten", "truncated-head-deleted", "head-deleted"),
    ]
    async with serve_audit(settings):
        for practice_id in practices:
            await _publish(amqp, practice_id, 6)
        for practice_id in practices:
            await _stored(records, practice_id, 6)
        heads = records.database["heads"]
        await eventually(
            lambda: heads.count_documents({"sequence": 6}),
            until=lambda n: n == len(practices),
            what="chain heads at 6",
        )

        await records.update_one(
            {"practice_id": "modified", "sequence": 3}, {"$set": {"subject_id": "someone-else"}}
        )
        await records.delete_one({"practice_id": "deleted", "sequence": 3})
        await _insert_forged(records, "inserted", 3)
        await _swap_sequences(records, "reordered", 3, 4)
        await records.delete_one({"practice_id": "truncated", "sequence": 6})
        await records.delete_many(
            {"practice_id": "truncated-head-rewritten", "sequence": {"$gt": 4}}
        )
        fourth = await records.find_one({"practice_id": "truncated-head-rewritten", "sequence": 4})
        assert fourth is not None
        await heads.update_one(
            {"_id": "truncated-head-rewritten"},
            {"$set": {"sequence": 4, "hash": fourth["hash"]}},
        )
        await records.delete_many({"practice_id": "truncated-head-deleted", "sequence": {"$gt": 4}})
        await heads.delete_one({"_id": "truncated-head-deleted"})
        await heads.delete_one({"_id": "head-deleted"})

        over_rpc = {
            practice_id: await rpc.result(VerifyChain(practice_id=practice_id), ChainVerification)
            for practice_id in practices
        }

    assert over_rpc["intact"] == ChainVerification(valid=True, records_checked=6)
    broken_at = {p: v.first_broken_sequence for p, v in over_rpc.items() if not v.valid}
    assert broken_at == {
        "modified": 3,
        "deleted": 3,
        "inserted": 4,
        "reordered": 3,
        "truncated": 6,
        "truncated-head-rewritten": 5,
        "truncated-head-deleted": 5,
        "head-deleted": 7,
    }
    assert all(over_rpc[p].problem for p in broken_at)
    assert await cli.run(["verify", "--practice", "intact"], settings) == 0
    for practice_id in broken_at:
        assert await cli.run(["verify", "--practice", practice_id], settings) == 1


async def test_two_instances_keep_one_valid_chain_and_a_standby_takes_over(
    settings: AuditSettings, amqp: Amqp, records: AsyncCollection[Document]
) -> None:
    per_batch = 100
    store = AuditStore(records.database, head_key=KEY)
    async with AsyncExitStack() as standby_stack:
        active_stack = AsyncExitStack()
        active = await active_stack.enter_async_context(serve_audit(settings))
        standby = await standby_stack.enter_async_context(serve_audit(settings))
        try:
            await asyncio.gather(*(_publish(amqp, p, per_batch) for p in ("north", "south")))
            for practice_id in ("north", "south"):
                await _stored(records, practice_id, per_batch)
            async with httpx.AsyncClient() as http:

                async def consumed(urls: list[str]) -> int:
                    report = (await http.get(f"{urls[0]}/health")).json()
                    return int(report["messages"]["consumed"].get(LinkOpened.ROUTING_KEY, 0))

                # Records are stored before their batch moves the watermark, then each
                # delivery is counted.
                active_count = await eventually(
                    lambda: consumed(active),
                    until=lambda count: count >= 2 * per_batch,
                    what="every event counted",
                )
                standby_count = await consumed(standby)
            assert active_count == 2 * per_batch
            assert standby_count == 0, "the standby stays idle"
        finally:
            await active_stack.aclose()

        await _publish(amqp, "north", per_batch)
        await _stored(records, "north", 2 * per_batch)

    for practice_id, expected in (("north", 2 * per_batch), ("south", per_batch)):
        verification = await verify_chain(store, practice_id, KEY)
        assert verification == ChainVerification(valid=True, records_checked=expected)


async def test_prune_removes_old_records_behind_a_signed_checkpoint(
    settings: AuditSettings, amqp: Amqp, records: AsyncCollection[Document]
) -> None:
    store = AuditStore(records.database, head_key=KEY)
    async with serve_audit(settings):
        await _publish(amqp, "old", 5)
        await _stored(records, "old", 5)
        boundary = milliseconds(datetime.now(UTC)) + timedelta(milliseconds=1)
        await eventually(
            lambda: asyncio.sleep(0.01, datetime.now(UTC)), until=lambda t: t > boundary
        )
        await _publish(amqp, "old", 3)
        await _stored(records, "old", 8)

        seven_years_later = (boundary + timedelta(days=round(365.25 * 7))).isoformat()
        status = await cli.run(["prune", "--practice", "old", "--now", seven_years_later], settings)
        remaining = await records.find({"practice_id": "old"}).sort("sequence", 1).to_list()
        after_prune = await verify_chain(store, "old", KEY)

        await _publish(amqp, "old", 2)
        await _stored(records, "old", 5)
        after_more = await verify_chain(store, "old", KEY)

    assert status == 0
    assert [r["sequence"] for r in remaining] == [6, 7, 8]
    checkpoint = await store.latest_checkpoint("old")
    assert checkpoint is not None
    assert (checkpoint.sequence, checkpoint.records_removed) == (5, 5)
    assert checkpoint.hash == remaining[0]["previous_hash"]
    assert after_prune == ChainVerification(valid=True, records_checked=3)
    assert after_more == ChainVerification(valid=True, records_checked=5)

    checkpoints = records.database["checkpoints"]
    await checkpoints.update_one({"practice_id": "old"}, {"$set": {"sequence": 4}})
    forged = await verify_chain(store, "old", KEY)
    assert not forged.valid
    assert forged.problem == "retention checkpoint signature does not verify"


async def test_a_repeated_batch_moves_the_watermark_its_first_attempt_left_behind(
    records: AsyncCollection[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt stores its records and stops before the watermark, as a crash would;
    the redelivered batch finds only duplicates and must still move it, or checks and pruning
    never see the practice. Being the whole chain, it may sign it too."""
    store = AuditStore(records.database, head_key=KEY)
    await store.ensure_indexes()
    drafts = [access_draft("wm", f"event-{n}") for n in range(3)]

    async def stops(practice_id: str, head: ChainHead) -> None:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(store, "_advance_watermark", stops)
        with pytest.raises(ConnectionError):
            await store.append("wm", drafts, datetime.now(UTC))
    assert await store.watermark("wm") is None

    await AuditStore(records.database, head_key=KEY).append("wm", drafts, datetime.now(UTC))
    watermark = await store.watermark("wm")
    assert watermark is not None
    assert watermark.head == await store.head("wm")
    assert await verify_chain(store, "wm", KEY) == ChainVerification(valid=True, records_checked=3)
    assert (await store.head("wm")).sequence == 3
    assert "wm" in await store.practices()


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[Document] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_redelivered_batch_is_sorted_out_by_id_reads_alone(
    infra: Infrastructure, records: AsyncCollection[Document], settings: AuditSettings
) -> None:
    """Events recorded already are found by `_id`: on FerretDB any other filter (or a sort)
    reads the whole records collection, which under load outlasted the socket timeout, so
    the batch came back again and again and starved every service of the database."""
    finds = _Finds()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[finds]
    )
    try:
        store = AuditStore(client[settings.database], head_key=KEY)
        await store.ensure_indexes()
        drafts = [access_draft("again", f"event-{n}") for n in range(5)]
        await store.append("again", drafts[:3], datetime.now(UTC))
        finds.commands.clear()

        await store.append("again", [drafts[1], *drafts[3:], drafts[0]], datetime.now(UTC))

        record_reads = [command for command in finds.commands if command["find"] == "records"]
        stored = await records.find({"practice_id": "again"}).sort("sequence", 1).to_list()
        verification = await verify_chain(store, "again", KEY)
        watermark = await store.watermark("again")
    finally:
        await client.close()
    assert record_reads, "the duplicates were not looked up"
    assert all(set(read["filter"]) == {"_id"} and "sort" not in read for read in record_reads)
    assert [(r["event_id"], r["sequence"]) for r in stored] == [
        (f"event-{n}", n + 1) for n in range(5)
    ]
    assert verification == ChainVerification(valid=True, records_checked=5)
    assert watermark is not None
    assert watermark.head == ChainHead(5, stored[-1]["hash"])


async def test_a_duplicate_met_mid_batch_leaves_no_gap_in_the_chain(
    records: AsyncCollection[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event recorded by another instance just after this batch was checked: FerretDB's
    ordered insert stops at it but stores part of what follows, records that link to one
    that is not there. They are withdrawn and sealed again."""
    store = AuditStore(records.database, head_key=KEY)
    await store.ensure_indexes()
    raced = access_draft("race", "event-raced")
    await store.append("race", [raced], datetime.now(UTC))
    checked = store._recorded_heads
    calls = 0

    async def misses_it_once(drafts: list[Draft], *, by: str = "_id") -> dict[str, ChainHead]:
        nonlocal calls
        calls += 1
        return {} if calls == 1 else await checked(drafts, by=by)

    monkeypatch.setattr(store, "_recorded_heads", misses_it_once)
    batch = [
        *(access_draft("race", f"before-{n}") for n in range(150)),
        raced,
        *(access_draft("race", f"after-{n}") for n in range(100)),
    ]
    await store.append("race", batch, datetime.now(UTC))

    stored = await records.find({"practice_id": "race"}).sort("sequence", 1).to_list()
    assert [r["sequence"] for r in stored] == list(range(1, 252))
    assert len({r["event_id"] for r in stored}) == 251
    assert await verify_chain(store, "race", KEY) == ChainVerification(
        valid=True, records_checked=251
    )


async def test_a_restarted_instance_appends_after_its_watermark_without_a_scan(
    infra: Infrastructure, records: AsyncCollection[Document], settings: AuditSettings
) -> None:
    """A new process starts from the watermark, read by `_id`: the chain's head looked up by
    practice and sequence reads the whole records collection on FerretDB, which for a large
    chain under load outlasted the operation time, again on every redelivery."""
    await AuditStore(records.database, head_key=KEY).ensure_indexes()
    drafts = [access_draft("restart", f"event-{n}") for n in range(4)]
    await AuditStore(records.database, head_key=KEY).append(
        "restart", drafts[:3], datetime.now(UTC)
    )
    finds = _Finds()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[finds]
    )
    try:
        restarted = AuditStore(client[settings.database], head_key=KEY)
        await restarted.append("restart", drafts[3:], datetime.now(UTC))
        record_reads = [command for command in finds.commands if command["find"] == "records"]
        verification = await verify_chain(restarted, "restart", KEY)
    finally:
        await client.close()
    assert record_reads, "the batch was not checked for events recorded already"
    assert all(set(read["filter"]) == {"_id"} and "sort" not in read for read in record_reads)
    assert verification == ChainVerification(valid=True, records_checked=4)


async def test_records_past_the_watermark_are_found_when_the_append_meets_them(
    infra: Infrastructure, records: AsyncCollection[Document], settings: AuditSettings
) -> None:
    """An attempt stored records and stopped before moving the watermark: a new process starts
    from the watermark, meets those sequences taken, looks the head up and appends after it.
    That lookup is a scan on FerretDB, so the server is told to stop it at a time limit."""
    store = AuditStore(records.database, head_key=KEY)
    await store.ensure_indexes()
    drafts = [access_draft("behind", f"event-{n}") for n in range(5)]
    await store.append("behind", drafts[:3], datetime.now(UTC))
    first = await records.find_one({"practice_id": "behind", "sequence": 1}) or {}
    behind = Watermark("behind", 1, first["hash"]).signed_with(KEY)
    await records.database["heads"].update_one(
        {"_id": "behind"},
        {"$set": {"sequence": 1, "hash": first["hash"], "signature": behind.signature}},
    )

    finds = _Finds()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[finds]
    )
    try:
        await AuditStore(client[settings.database], head_key=KEY).append(
            "behind", drafts[3:], datetime.now(UTC)
        )
    finally:
        await client.close()
    scans = [command for command in finds.commands if set(command["filter"]) != {"_id"}]
    assert scans, "the chain's head was not looked up"
    assert all(command["maxTimeMS"] == SCAN_TIME_LIMIT_MS for command in scans)

    stored = await records.find({"practice_id": "behind"}).sort("sequence", 1).to_list()
    assert [(r["event_id"], r["sequence"]) for r in stored] == [
        (f"event-{n}", n + 1) for n in range(5)
    ]
    assert await verify_chain(store, "behind", KEY) == ChainVerification(
        valid=True, records_checked=5
    )
    watermark = await store.watermark("behind")
    assert watermark is not None
    assert watermark.head == ChainHead(5, stored[-1]["hash"])


async def test_a_chain_cut_short_with_its_head_removed_stays_broken_until_an_operator_signs_it(
    records: AsyncCollection[Document], settings: AuditSettings
) -> None:
    """A restarted appender that finds no signed head appends after the last record it finds;
    signing that would make the cut chain verify. Chains recorded before the key was set are
    signed the same way, by `sign-head`."""
    drafts = [access_draft("cut", f"event-{n}") for n in range(8)]
    await AuditStore(records.database, head_key=KEY).append("cut", drafts[:6], datetime.now(UTC))
    await records.delete_many({"practice_id": "cut", "sequence": {"$gt": 4}})
    await records.database["heads"].delete_one({"_id": "cut"})

    restarted = AuditStore(records.database, head_key=KEY)
    await restarted.append("cut", drafts[6:7], datetime.now(UTC))
    await restarted.append("cut", drafts[7:], datetime.now(UTC))
    cut = await verify_chain(restarted, "cut", KEY, settle_seconds=0)
    after_restart = await verify_chain(
        AuditStore(records.database, head_key=KEY), "cut", KEY, settle_seconds=0
    )

    unsigned_before = AuditStore(records.database)
    legacy_drafts = [access_draft("legacy", f"legacy-{n}") for n in range(3)]
    await unsigned_before.append("legacy", legacy_drafts, datetime.now(UTC))
    legacy = await verify_chain(unsigned_before, "legacy", KEY, settle_seconds=0)

    assert (
        cut
        == after_restart
        == ChainVerification(
            valid=False,
            records_checked=6,
            first_broken_sequence=7,
            problem="chain head is missing or its signature does not verify",
        )
    )
    assert await verify_chain(restarted, "cut", None) == ChainVerification(
        valid=True, records_checked=6
    ), "without a key the cut cannot be told"
    assert not legacy.valid
    for practice_id, checked in (("cut", 6), ("legacy", 3)):
        assert await cli.run(["sign-head", "--practice", practice_id], settings) == 0
        assert await verify_chain(restarted, practice_id, KEY) == ChainVerification(
            valid=True, records_checked=checked
        )
    await restarted.append("cut", [access_draft("cut", "event-later")], datetime.now(UTC))
    assert await verify_chain(restarted, "cut", KEY) == ChainVerification(
        valid=True, records_checked=7
    ), "once signed, the appender signs again"


async def test_a_chain_longer_than_many_pages_is_read_a_range_at_a_time(
    infra: Infrastructure, records: AsyncCollection[Document], settings: AuditSettings
) -> None:
    """Verification and pruning read a bounded range of sequences per query: one query over a
    long chain ran into the time limit, so the verify command crashed and prune never ran."""
    page = 4
    store = AuditStore(records.database, head_key=KEY, page_size=page)
    await store.ensure_indexes()
    now = datetime.now(UTC)
    for practice_id in ("long", "pruned"):
        drafts = [access_draft(practice_id, f"{practice_id}-{n}") for n in range(31)]
        for start in range(0, 30, 7):
            batch = drafts[start : min(start + 7, 30)]
            await store.append(practice_id, batch, now - timedelta(days=3650))
        await store.append(practice_id, drafts[30:], now)

    finds = _Finds()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[finds]
    )
    try:
        paged = AuditStore(client[settings.database], head_key=KEY, page_size=page)
        intact = await verify_chain(paged, "long", KEY)
        chain_reads = [
            command["filter"]["sequence"]
            for command in finds.commands
            if command["find"] == "records" and "sequence" in command["filter"]
        ]
    finally:
        await client.close()
    assert intact == ChainVerification(valid=True, records_checked=31)
    assert len(chain_reads) >= 31 // page
    assert all(read["$lte"] - read["$gt"] <= page for read in chain_reads if "$lte" in read)

    await records.update_one(
        {"practice_id": "long", "sequence": 23}, {"$set": {"subject_id": "someone-else"}}
    )
    modified = await verify_chain(store, "long", KEY, settle_seconds=0)
    assert (modified.valid, modified.first_broken_sequence) == (False, 23)
    await records.update_one(
        {"practice_id": "long", "sequence": 23}, {"$set": {"subject_id": "client-1"}}
    )

    await records.delete_many({"practice_id": "long", "sequence": {"$gte": 10, "$lte": 18}})
    await records.database["heads"].delete_one({"_id": "long"})
    gap = await verify_chain(store, "long", None, settle_seconds=0)
    assert (gap.valid, gap.first_broken_sequence) == (False, 10), "a gap wider than a page"

    pruned = await prune(store, "pruned", now=now, retention_years=7, checkpoint_key=KEY)
    assert (pruned.removed, pruned.refused) == (30, None)
    assert await verify_chain(store, "pruned", KEY) == ChainVerification(
        valid=True, records_checked=1
    )
