"""Projection allowlist, chain sealing and verification, checkpoint signatures: no I/O."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sotto_audit.domain import (
    GENESIS,
    AuditRecord,
    ChainVerifier,
    Checkpoint,
    Draft,
    UnrecordableEventError,
    Watermark,
    project,
    safe_scalar,
    seal,
)
from sotto_audit.handlers import BatchingRecorder
from sotto_contracts.audit import VerifyChain
from tests.integration.audit.samples import LEAKED_ADDRESS, every_event

NOW = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)


def _chain(count: int = 5) -> list[AuditRecord]:
    drafts = [project(event) for event in every_event("p1", at=NOW)[:count]]
    return seal(drafts, GENESIS, NOW)


def _verify(records: list[AuditRecord]) -> tuple[bool, int | None]:
    verifier = ChainVerifier(GENESIS)
    for record in records:
        if not verifier.check(record):
            break
    result = verifier.finish(records[-1].head if records else None)
    return result.valid, result.first_broken_sequence


def test_safe_scalar_keeps_codes_and_drops_prose_and_addresses() -> None:
    assert safe_scalar("link-1") == "link-1"
    assert safe_scalar(LEAKED_ADDRESS) is None
    assert safe_scalar("two words") is None
    assert safe_scalar(["a", "b c", "d"]) == "a,d"
    assert safe_scalar([object(), object()]) == 2
    assert safe_scalar(True) is True


def test_every_projection_holds_no_free_text() -> None:
    for event in every_event("p1"):
        draft = project(event)
        assert "@" not in repr(draft), event.ROUTING_KEY
        texts = [value for value in draft.attributes.values() if isinstance(value, str)]
        assert not any(" " in text for text in texts), event.ROUTING_KEY


def test_queries_are_not_recordable() -> None:
    with pytest.raises(UnrecordableEventError):
        project(VerifyChain(practice_id="p1"))


def test_sealed_chain_verifies_and_each_tampering_breaks_it() -> None:
    chain = _chain()
    assert _verify(chain) == (True, None)
    modified = [*chain[:2], replace(chain[2], subject_id="x"), *chain[3:]]
    assert _verify(modified) == (False, 3)
    assert _verify(chain[:2] + chain[3:]) == (False, 3)
    reordered = [*chain[:2], replace(chain[3], sequence=3), replace(chain[2], sequence=4), chain[4]]
    assert _verify(reordered) == (False, 3)
    verifier = ChainVerifier(GENESIS)
    for record in chain[:4]:
        verifier.check(record)
    assert verifier.finish(chain[-1].head).first_broken_sequence == 5


def test_hash_survives_millisecond_storage() -> None:
    (record,) = _chain(1)
    assert record.occurred_at.microsecond % 1000 == 0
    assert record.computed_hash() == record.hash


def test_checkpoint_signature_binds_sequence_and_hash() -> None:
    checkpoint = Checkpoint("p1", 5, "ab" * 32, 5, NOW).signed_with(b"key")
    assert checkpoint.is_authentic(b"key")
    assert not checkpoint.is_authentic(b"other")
    assert not replace(checkpoint, sequence=4).is_authentic(b"key")


def test_watermark_signature_binds_practice_sequence_and_hash() -> None:
    head = _chain()[-1].head
    watermark = Watermark("p1", head.sequence, head.hash).signed_with(b"key")
    assert watermark.is_authentic(b"key")
    assert not watermark.is_authentic(b"other")
    assert not replace(watermark, sequence=4).is_authentic(b"key")
    assert not replace(watermark, hash=_chain()[3].hash).is_authentic(b"key")
    assert not replace(watermark, practice_id="p2").is_authentic(b"key")
    checkpoint = Checkpoint("p1", head.sequence, head.hash, 5, NOW).signed_with(b"key")
    assert not replace(watermark, signature=checkpoint.signature).is_authentic(b"key")


def test_a_required_watermark_missing_breaks_the_chain_after_its_last_record() -> None:
    """A chain cut short together with its watermark looks whole; only a signed watermark,
    required, tells."""
    verifier = ChainVerifier(GENESIS)
    for record in _chain()[:4]:
        verifier.check(record)
    assert verifier.finish(None).valid, "without a required watermark nothing tells"
    verifier = ChainVerifier(GENESIS)
    for record in _chain()[:4]:
        verifier.check(record)
    cut = verifier.finish(None, watermark_required=True)
    assert (cut.valid, cut.first_broken_sequence) == (False, 5)
    assert ChainVerifier(GENESIS).finish(None, watermark_required=True).valid, "no records yet"
    pruned_away = ChainVerifier(_chain()[-1].head).finish(None, watermark_required=True)
    assert (pruned_away.valid, pruned_away.first_broken_sequence) == (False, 6)


class _FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[Draft]] = []

    async def append(self, practice_id: str, drafts: list[Draft], recorded_at: datetime) -> int:
        self.batches.append(list(drafts))
        return len(drafts)


async def test_recorder_batches_concurrent_events_per_practice() -> None:
    store = _FakeStore()
    recorder = BatchingRecorder(store, max_batch=100, linger_seconds=0.01)  # type: ignore[arg-type]
    drafts = [project(event) for event in every_event("p1") + every_event("p2")]
    await asyncio.wait_for(asyncio.gather(*(recorder.record(d) for d in drafts)), timeout=5)
    assert sorted(len(batch) for batch in store.batches) == [32, 32]
    assert all(len({d.practice_id for d in batch}) == 1 for batch in store.batches)
