"""Use cases: record events in batches, answer log queries, verify and prune chains."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sotto_audit.adapters.store import AuditStore, RecordFilter
from sotto_audit.domain import (
    GENESIS,
    AuditRecord,
    Category,
    ChainVerifier,
    Checkpoint,
    Draft,
    UnrecordableEventError,
    project,
    retention_cutoff,
)
from sotto_contracts.audit import (
    AuditPage,
    AuditRecordView,
    ChainVerification,
    GetAccessLog,
    GetDeliveryLog,
)
from sotto_contracts.base import Message, utc_now
from sotto_contracts.registry import message_type
from sotto_kit.parking import PoisonMessageError, describe

Clock = Callable[[], datetime]

logger = logging.getLogger(__name__)


class BatchNotStoredError(RuntimeError):
    """The batch holding this event was not stored; its consumer returns it for another try."""


class BatchingRecorder:
    """Collects drafts from concurrent consumers and appends them per practice in one write.

    `record` returns once the draft is durable (or raises if the write failed), so the
    consumer acks only stored events. A drain task runs while anything is pending.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        max_batch: int,
        linger_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._clock = clock
        self._pending: list[tuple[Draft, asyncio.Future[None]]] = []
        self._full = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None

    async def record(self, draft: Draft) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((draft, done))
        if len(self._pending) >= self._max_batch:
            self._full.set()
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain(), name="audit-batch-drain")
        await done

    async def _drain(self) -> None:
        while self._pending:
            if len(self._pending) < self._max_batch and self._linger > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if len(self._pending) < self._max_batch:
                self._full.clear()
            await self._write(batch)

    async def _write(self, batch: list[tuple[Draft, asyncio.Future[None]]]) -> None:
        by_practice: dict[str, list[tuple[Draft, asyncio.Future[None]]]] = defaultdict(list)
        for item in batch:
            by_practice[item[0].practice_id].append(item)
        recorded_at = self._clock()
        await asyncio.gather(*(self._append(items, recorded_at) for items in by_practice.values()))

    async def _append(
        self, items: list[tuple[Draft, asyncio.Future[None]]], recorded_at: datetime
    ) -> None:
        drafts = [draft for draft, _ in items]
        try:
            await self._store.append(drafts[0].practice_id, drafts, recorded_at)
        except Exception as error:
            logger.exception("audit batch not stored", extra={"events": len(drafts)})
            # Each waiting consumer (which returns its event for another try) gets an error of
            # its own: one exception raised in a hundred consumers grows a traceback a hundred
            # frames deep. The cause says whether the database was unreachable.
            for _, done in items:
                if not done.done():
                    failure = BatchNotStoredError(describe(error))
                    failure.__cause__ = error
                    done.set_exception(failure)
            return
        for _, done in items:
            if not done.done():
                done.set_result(None)


def decode_event(routing_key: str, body: bytes) -> Message:
    """The contract message for a delivery on the events exchange; poison if unknown."""
    try:
        contract = message_type(routing_key)
    except KeyError as error:
        raise PoisonMessageError(f"unknown routing key {routing_key!r}") from error
    return contract.model_validate_json(body)


async def record_event(event: Message, recorder: BatchingRecorder) -> None:
    try:
        draft = project(event)
    except UnrecordableEventError as error:
        raise PoisonMessageError(str(error)) from error
    await recorder.record(draft)


# ----------------------------------------------------------------------------- queries


def _view(record: AuditRecord) -> AuditRecordView:
    return AuditRecordView(
        sequence=record.sequence,
        event_id=record.event_id,
        routing_key=record.routing_key,
        occurred_at=record.occurred_at,
        recorded_at=record.recorded_at,
        actor_id=record.actor_id,
        subject_id=record.subject_id,
        conversation_id=record.conversation_id,
        outcome=record.outcome,
        attributes=record.attributes,
        hash=record.hash,
        previous_hash=record.previous_hash,
    )


async def _page(store: AuditStore, where: RecordFilter, page: int, page_size: int) -> AuditPage:
    records, total = await store.page(where, page=page, page_size=page_size)
    return AuditPage(
        items=[_view(record) for record in records],
        total=total,
        page=page,
        page_size=page_size,
    )


async def delivery_log(query: GetDeliveryLog, store: AuditStore) -> AuditPage:
    """Emails sent, deferred, failed or ambiguous and links issued, per recipient/conversation."""
    where = RecordFilter(
        practice_id=query.practice_id,
        categories=(Category.DELIVERY,),
        subject_id=query.recipient_id,
        conversation_id=query.conversation_id,
        since=query.since,
        until=query.until,
    )
    return await _page(store, where, query.page, query.page_size)


async def access_log(query: GetAccessLog, store: AuditStore) -> AuditPage:
    """Link opens and refusals, verification, sessions, views and exports: per client (with
    their contacts) or staff."""
    where = RecordFilter(
        practice_id=query.practice_id,
        categories=(Category.ACCESS,),
        subject_id=query.client_id,
        also_subject_ids=tuple(query.contact_ids),
        actor_id=query.staff_id,
        since=query.since,
        until=query.until,
    )
    return await _page(store, where, query.page, query.page_size)


# ----------------------------------------------------------------------------- integrity


async def verify_chain(
    store: AuditStore,
    practice_id: str,
    checkpoint_key: bytes | None,
    *,
    settle_seconds: float = 1.0,
) -> ChainVerification:
    """Walk the chain from genesis or the latest signed checkpoint; report the first break.

    With a key the chain must end at or past a watermark signed with it. Without one only an
    unsigned watermark is compared, which whoever removes records from the end can rewrite
    or remove too.

    A break is confirmed by a second walk after `settle_seconds`: another instance may be
    writing sequences it has just claimed.
    """
    result = await _walk(store, practice_id, checkpoint_key)
    if not result.valid and settle_seconds > 0:
        await asyncio.sleep(settle_seconds)
        result = await _walk(store, practice_id, checkpoint_key)
    return result


async def _walk(
    store: AuditStore,
    practice_id: str,
    checkpoint_key: bytes | None,
    *,
    signed_watermark: bool = True,
) -> ChainVerification:
    checkpoint = await store.latest_checkpoint(practice_id)
    start = GENESIS
    if checkpoint is not None:
        if checkpoint_key is None or not checkpoint.is_authentic(checkpoint_key):
            return ChainVerification(
                valid=False,
                records_checked=0,
                first_broken_sequence=checkpoint.sequence,
                problem="retention checkpoint signature does not verify",
            )
        start = checkpoint.head
    watermark = await store.watermark(practice_id)  # read first: appends go on meanwhile
    verifier = ChainVerifier(start)
    async for record in store.chain(practice_id, after=start.sequence):
        if not verifier.check(record):
            break
    if checkpoint_key is None or not signed_watermark:
        return verifier.finish(None if watermark is None else watermark.head)
    authentic = watermark is not None and watermark.is_authentic(checkpoint_key)
    return verifier.finish(
        watermark.head if watermark is not None and authentic else None,
        watermark_required=True,
    )


async def sign_head(
    store: AuditStore, practice_id: str, checkpoint_key: bytes
) -> tuple[ChainVerification, bool]:
    """Sign the chain's current head as its watermark if the chain checks out against the
    watermark it has; whether it was signed. For chains recorded before the key was set, or
    whose watermark an appender could not trust: whoever runs it vouches that nothing was cut
    off the end. Not signed when appenders moved the watermark past the head meanwhile."""
    head = await store.head(practice_id)
    result = await _walk(store, practice_id, checkpoint_key, signed_watermark=False)
    return result, result.valid and await store.sign_watermark(practice_id, head)


@dataclass(frozen=True)
class PruneResult:
    practice_id: str
    removed: int
    checkpoint: Checkpoint | None
    refused: str | None = None


async def prune(
    store: AuditStore,
    practice_id: str,
    *,
    now: datetime,
    retention_years: int,
    checkpoint_key: bytes,
) -> PruneResult:
    """Remove the chain's prefix older than retention, behind a signed checkpoint of its end."""
    verification = await verify_chain(store, practice_id, checkpoint_key)
    if not verification.valid:
        return PruneResult(practice_id, 0, None, refused=verification.problem)
    previous = await store.latest_checkpoint(practice_id)
    after = previous.sequence if previous is not None else 0
    head = await store.head(practice_id)
    first_kept = await store.first_recorded_since(
        practice_id, retention_cutoff(now, retention_years), after=after, through=head.sequence
    )
    through = first_kept.sequence - 1 if first_kept is not None else head.sequence
    last_removed = await store.record_at(practice_id, through) if through > after else None
    if last_removed is None:
        return PruneResult(practice_id, 0, None)
    checkpoint = Checkpoint(
        practice_id=practice_id,
        sequence=last_removed.sequence,
        hash=last_removed.hash,
        records_removed=through - after,
        created_at=now,
    ).signed_with(checkpoint_key)
    await store.save_checkpoint(checkpoint)
    removed = await store.remove_through(practice_id, through)
    return PruneResult(practice_id, removed, checkpoint)
