"""The recorder hands a failed batch's error to every waiting consumer, each its own."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Sequence
from datetime import datetime

from sotto_audit.adapters.store import AuditStore
from sotto_audit.domain import Draft
from sotto_audit.handlers import BatchingRecorder, BatchNotStoredError
from tests.integration.audit.samples import access_draft

WAITERS = 100


class _FailingStore:
    async def append(
        self, practice_id: str, drafts: Sequence[Draft], recorded_at: datetime
    ) -> None:
        raise TimeoutError("the database did not answer")


async def test_each_consumer_of_a_failed_batch_gets_a_short_error_of_its_own() -> None:
    """One exception raised in a hundred consumers grows a traceback a hundred frames deep,
    logged by each of them: a failed batch wrote 1.3 GB of audit logs in ten minutes."""
    store: AuditStore = _FailingStore()  # type: ignore[assignment]
    recorder = BatchingRecorder(store, max_batch=WAITERS, linger_seconds=0.05)

    outcomes = await asyncio.gather(
        *(recorder.record(access_draft("p1", f"event-{n}")) for n in range(WAITERS)),
        return_exceptions=True,
    )

    errors = [outcome for outcome in outcomes if isinstance(outcome, BatchNotStoredError)]
    assert len(errors) == WAITERS
    assert len({id(error) for error in errors}) == WAITERS
    assert max(len(traceback.extract_tb(error.__traceback__)) for error in errors) <= 3
    assert "the database did not answer" in str(errors[-1])
