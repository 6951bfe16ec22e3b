"""The append-only record store: per-practice chains claimed by a unique (practice, sequence).

Appending is an ordered claim: the events not recorded yet (a record's `_id` is its event id)
are inserted with the sequences that follow the head this instance knows; a duplicate-key
error means another instance claimed them first, so the head is moved on and the rest
re-sealed. The `heads` collection is a watermark of the last acknowledged record, so a chain
that lost its tail is detected too; a new instance starts appending after it. With a key the
watermark is signed, and only an authentic one is trusted: an appender that finds a chain
without one appends after its last record but leaves the watermark unsigned (verification
reports it) until an operator has checked the chain and signed its head. Records written
before `_id` was the event id keep their own `_id` and are still found, by the `event_id` index.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from sotto_audit.domain import (
    GENESIS,
    AuditRecord,
    Category,
    ChainHead,
    Checkpoint,
    Draft,
    Watermark,
    fields_of,
    seal,
)
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections

DUPLICATE_KEY = 11000
MAX_APPEND_ATTEMPTS = 100
READ_BATCH = 1000
CHAIN_PAGE = 10_000


class ChainContentionError(RuntimeError):
    """Other instances kept claiming the same sequences; the batch is retried later."""


class AuditWriteError(RuntimeError):
    """The database refused a batch for another reason than a duplicate."""


@dataclass(frozen=True)
class RecordFilter:
    practice_id: str
    categories: tuple[Category, ...]
    actor_id: str | None = None
    subject_id: str | None = None
    # records about these too, with the subject's own (a client's contacts)
    also_subject_ids: tuple[str, ...] = ()
    conversation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_query(self) -> Document:
        query: Document = {
            "practice_id": self.practice_id,
            "category": {"$in": [category.value for category in self.categories]},
        }
        for name in ("actor_id", "subject_id", "conversation_id"):
            if (value := getattr(self, name)) is not None:
                query[name] = value
        if self.subject_id is not None and self.also_subject_ids:
            query["subject_id"] = {"$in": [self.subject_id, *self.also_subject_ids]}
        moment: Document = {}
        if self.since is not None:
            moment["$gte"] = self.since
        if self.until is not None:
            moment["$lt"] = self.until
        if moment:
            query["occurred_at"] = moment
        return query


def _document(record: AuditRecord) -> Document:
    return fields_of(record) | {"_id": record.event_id, "category": record.category.value}


def _record(document: Document) -> AuditRecord:
    return AuditRecord(
        event_id=document["event_id"],
        routing_key=document["routing_key"],
        practice_id=document["practice_id"],
        category=Category(document["category"]),
        occurred_at=document["occurred_at"],
        actor_id=document.get("actor_id"),
        subject_id=document.get("subject_id"),
        conversation_id=document.get("conversation_id"),
        outcome=document.get("outcome"),
        attributes=dict(document.get("attributes") or {}),
        sequence=document["sequence"],
        recorded_at=document["recorded_at"],
        previous_hash=document["previous_hash"],
        hash=document["hash"],
    )


def _checkpoint(document: Document) -> Checkpoint:
    return Checkpoint(
        practice_id=document["practice_id"],
        sequence=document["sequence"],
        hash=document["hash"],
        records_removed=document["records_removed"],
        created_at=document["created_at"],
        signature=document["signature"],
    )


def _watermark(document: Document) -> Watermark:
    return Watermark(
        practice_id=document["_id"],
        sequence=document["sequence"],
        hash=document["hash"],
        signature=document.get("signature", ""),
    )


def _only_duplicates(error: BulkWriteError) -> bool:
    return all(item.get("code") == DUPLICATE_KEY for item in error.details.get("writeErrors", []))


def _summary(error: BulkWriteError) -> str:
    """What went wrong, without the documents the error quotes."""
    errors = error.details.get("writeErrors", [])
    codes = sorted({str(item.get("code")) for item in errors})
    return f"insert failed: {len(errors)} write errors, codes {', '.join(codes)}"


def _followed(head: ChainHead, recorded: Iterable[ChainHead]) -> ChainHead:
    """The chain's head after the records at the sequences that directly follow `head`."""
    for record in sorted(recorded, key=lambda each: each.sequence):
        if record.sequence == head.sequence + 1:
            head = record
    return head


def _whole_chain(head: ChainHead, recorded: Iterable[ChainHead]) -> bool:
    """Whether these records are all of a chain from its first record to `head`."""
    positions = list(recorded)
    return head in positions and {each.sequence for each in positions} == set(
        range(1, head.sequence + 1)
    )


class AuditStore:
    """`head_key` signs watermarks; `page_size` is how many sequences one chain read covers."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        *,
        head_key: bytes | None = None,
        page_size: int = CHAIN_PAGE,
    ) -> None:
        self._records = database["records"]
        self._heads = database["heads"]
        self._checkpoints = database["checkpoints"]
        self._head_key = head_key
        self._page_size = page_size
        self._known_heads: dict[str, ChainHead] = {}
        self._unsigned: set[str] = set()

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self._records, self._heads, self._checkpoints]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self._records.create_index("event_id", unique=True)
        await self._records.create_index(
            [("practice_id", ASCENDING), ("sequence", ASCENDING)], unique=True
        )
        for who in ("subject_id", "actor_id"):
            await self._records.create_index(
                [("practice_id", ASCENDING), ("category", ASCENDING), (who, ASCENDING)]
            )
        await self._checkpoints.create_index(
            [("practice_id", ASCENDING), ("sequence", ASCENDING)], unique=True
        )
        await self._heads.create_index("sequence")  # now, not lazily by two instances at once

    # ------------------------------------------------------------------------- appending

    async def append(
        self, practice_id: str, drafts: Sequence[Draft], recorded_at: datetime
    ) -> None:
        """Append the drafts not yet recorded to the practice's chain.

        Events recorded already (a redelivery, an event published twice) are left out before
        sealing, by one `_id` read (a record's `_id` is its event id): on FerretDB any other
        filter reads the whole, ever-growing collection, and an ordered insert that meets a
        duplicate goes on storing part of what follows it, which would leave a gap in the
        chain. A duplicate key at insert time is then another instance taking the sequences.
        """
        recorded = await self._recorded_heads(drafts)
        pending = [
            draft
            for draft in {draft.event_id: draft for draft in drafts}.values()
            if draft.event_id not in recorded
        ]
        head = self._known_heads.get(practice_id) or await self._head_to_try(practice_id)
        if practice_id in self._unsigned and (
            _whole_chain(head, recorded.values()) or await self.authentic_watermark(practice_id)
        ):
            self._unsigned.discard(practice_id)
        for _ in range(MAX_APPEND_ATTEMPTS):
            if not pending:
                break
            records = seal(pending, head, recorded_at)
            if await self._inserted(records):
                head = records[-1].head
                break
            recorded = await self._recorded_heads(pending)
            head = _followed(head, recorded.values())
            recorded = await self._withdraw_after_gap(records, recorded, head)
            pending = [draft for draft in pending if draft.event_id not in recorded]
            if not recorded:  # another instance took the sequences, or an old record is there
                latest = await self.head(practice_id)
                if latest == head:  # a record from before `_id` was the event id
                    legacy = await self._recorded_heads(pending, by="event_id")
                    if not legacy:
                        raise ChainContentionError(practice_id)
                    pending = [draft for draft in pending if draft.event_id not in legacy]
                head = latest
        else:
            raise ChainContentionError(practice_id)
        self._known_heads[practice_id] = head
        # Also when every draft was recorded already: the attempt that stored them may have
        # stopped before moving the watermark.
        await self._advance_watermark(practice_id, head)

    async def _head_to_try(self, practice_id: str) -> ChainHead:
        """Where this instance first tries to append: the watermark, one `_id` read. Records
        past it (an attempt that stopped before moving it, another instance) make the insert
        meet a duplicate sequence, and only then is the chain's head looked up, a scan on
        FerretDB. A practice without an authentic watermark has its head looked up at once;
        if it has records, this instance does not sign its watermarks (signing a chain cut short
        would hide the cut) until an operator signs its head, unless the chain is just this
        batch again: a new practice's first batch that stopped before its watermark."""
        watermark = await self.watermark(practice_id)
        if watermark is not None and (
            self._head_key is None or watermark.is_authentic(self._head_key)
        ):
            return watermark.head
        head = await self.head(practice_id)
        if self._head_key is not None and head != GENESIS:
            self._unsigned.add(practice_id)
        return head

    async def _inserted(self, records: Sequence[AuditRecord]) -> bool:
        """False if a duplicate key stopped the (ordered) insert; records before it may be in."""
        try:
            await self._records.insert_many([_document(r) for r in records], ordered=True)
        except BulkWriteError as error:
            if _only_duplicates(error):
                return False
            raise AuditWriteError(_summary(error)) from None
        return True

    async def _recorded_heads(
        self, drafts: Sequence[Draft], *, by: str = "_id"
    ) -> dict[str, ChainHead]:
        """The chain position of each of these events that is recorded, by event id."""
        cursor = self._records.find(
            {by: {"$in": [draft.event_id for draft in drafts]}},
            {"event_id": 1, "sequence": 1, "hash": 1},
            max_time_ms=SCAN_TIME_LIMIT_MS,  # a scan when `by` is "event_id" (older records)
        )
        return {
            document["event_id"]: ChainHead(document["sequence"], document["hash"])
            async for document in cursor
        }

    async def _withdraw_after_gap(
        self,
        sealed: Sequence[AuditRecord],
        recorded: dict[str, ChainHead],
        head: ChainHead,
    ) -> dict[str, ChainHead]:
        """Delete this attempt's own records stored beyond `head` (past the one that failed):
        they link to a record that is not there, and were never acknowledged. Returns what
        stays recorded."""
        stray = {
            record.event_id
            for record in sealed
            if record.sequence > head.sequence and recorded.get(record.event_id) == record.head
        }
        if stray:
            await self._records.delete_many({"_id": {"$in": sorted(stray)}})
        return {event_id: at for event_id, at in recorded.items() if event_id not in stray}

    async def _advance_watermark(self, practice_id: str, head: ChainHead) -> None:
        watermark = Watermark(practice_id, head.sequence, head.hash)
        if self._head_key is not None and practice_id not in self._unsigned:
            watermark = watermark.signed_with(self._head_key)
        fields = {"sequence": head.sequence, "hash": head.hash, "signature": watermark.signature}
        result = await self._heads.update_one(
            {"_id": practice_id, "sequence": {"$lt": head.sequence}}, {"$set": fields}
        )
        if result.matched_count == 0:
            with contextlib.suppress(DuplicateKeyError):  # already at or beyond this record
                await self._heads.insert_one({"_id": practice_id, **fields})

    # ------------------------------------------------------------------------- reading

    async def head(self, practice_id: str) -> ChainHead:
        """The last record of the chain, else the checkpoint it continues from, else genesis."""
        last = await self._records.find_one(
            {"practice_id": practice_id},
            sort=[("sequence", DESCENDING)],
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        checkpoint = await self.latest_checkpoint(practice_id)
        candidates = [GENESIS]
        if last is not None:
            candidates.append(ChainHead(last["sequence"], last["hash"]))
        if checkpoint is not None:
            candidates.append(checkpoint.head)
        return max(candidates, key=lambda head: head.sequence)

    async def watermark(self, practice_id: str) -> Watermark | None:
        document = await self._heads.find_one({"_id": practice_id})
        return None if document is None else _watermark(document)

    async def authentic_watermark(self, practice_id: str) -> bool:
        watermark = await self.watermark(practice_id)
        key = self._head_key
        return watermark is not None and key is not None and watermark.is_authentic(key)

    async def sign_watermark(self, practice_id: str, head: ChainHead) -> bool:
        """Sign `head` as the watermark unless appenders have moved it past; False then."""
        if self._head_key is None:
            raise ValueError("signing a chain head needs a key")
        watermark = Watermark(practice_id, head.sequence, head.hash).signed_with(self._head_key)
        fields = {"sequence": head.sequence, "hash": head.hash, "signature": watermark.signature}
        result = await self._heads.update_one(
            {"_id": practice_id, "sequence": {"$lte": head.sequence}}, {"$set": fields}
        )
        if result.matched_count == 0:
            try:
                await self._heads.insert_one({"_id": practice_id, **fields})
            except DuplicateKeyError:
                return False
        return True

    async def practices(self) -> list[str]:
        found = self._heads.find({}, {"_id": 1}, max_time_ms=SCAN_TIME_LIMIT_MS)
        return sorted([str(document["_id"]) async for document in found])

    async def chain(self, practice_id: str, *, after: int = 0) -> AsyncIterator[AuditRecord]:
        """The records after `after` in sequence order, read a range of sequences at a time:
        one query over a whole long chain outlasts the time limit."""
        while True:
            found = False
            async for document in self._range(practice_id, after):
                found = True
                after = document["sequence"]
                yield _record(document)
            if not found:
                later = await self._records.find_one(
                    {"practice_id": practice_id, "sequence": {"$gt": after}},
                    sort=[("sequence", ASCENDING)],
                    max_time_ms=SCAN_TIME_LIMIT_MS,
                )
                if later is None:
                    return
                after = later["sequence"] - 1  # past a gap wider than a page

    def _range(self, practice_id: str, after: int) -> AsyncCursor[Document]:
        return (
            self._records.find(
                {
                    "practice_id": practice_id,
                    "sequence": {"$gt": after, "$lte": after + self._page_size},
                },
                max_time_ms=SCAN_TIME_LIMIT_MS,
            )
            .sort("sequence", ASCENDING)
            .batch_size(READ_BATCH)
        )

    async def record_at(self, practice_id: str, sequence: int) -> AuditRecord | None:
        document = await self._records.find_one(
            {"practice_id": practice_id, "sequence": sequence}, max_time_ms=SCAN_TIME_LIMIT_MS
        )
        return None if document is None else _record(document)

    async def first_recorded_since(
        self, practice_id: str, moment: datetime, *, after: int, through: int
    ) -> AuditRecord | None:
        """The first record after `after` (up to `through`) recorded at `moment` or later,
        looked for a page of sequences at a time."""
        while after < through:
            upto = min(after + self._page_size, through)
            document = await self._records.find_one(
                {
                    "practice_id": practice_id,
                    "sequence": {"$gt": after, "$lte": upto},
                    "recorded_at": {"$gte": moment},
                },
                sort=[("sequence", ASCENDING)],
                max_time_ms=SCAN_TIME_LIMIT_MS,
            )
            if document is not None:
                return _record(document)
            after = upto
        return None

    async def page(
        self, where: RecordFilter, *, page: int, page_size: int
    ) -> tuple[list[AuditRecord], int]:
        query = where.as_query()
        total = await self._records.count_documents(query, maxTimeMS=SCAN_TIME_LIMIT_MS)
        skip = (page - 1) * page_size
        if skip >= total:  # also keeps absurd page numbers away from the 64-bit skip
            return [], total
        cursor = (
            self._records.find(query, max_time_ms=SCAN_TIME_LIMIT_MS)
            .sort("sequence", ASCENDING)
            .skip(skip)
            .limit(page_size)
        )
        return [_record(document) async for document in cursor], total

    # ------------------------------------------------------------------------- retention

    async def latest_checkpoint(self, practice_id: str) -> Checkpoint | None:
        document = await self._checkpoints.find_one(
            {"practice_id": practice_id},
            sort=[("sequence", DESCENDING)],
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        return None if document is None else _checkpoint(document)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        document: dict[str, Any] = fields_of(checkpoint)
        with contextlib.suppress(DuplicateKeyError):  # the same prune already wrote it
            await self._checkpoints.insert_one(document)

    async def remove_through(self, practice_id: str, sequence: int) -> int:
        """Delete records up to `sequence`; only after a checkpoint at that sequence is saved."""
        result = await self._records.delete_many(
            {"practice_id": practice_id, "sequence": {"$lte": sequence}}
        )
        return result.deleted_count
