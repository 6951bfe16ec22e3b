"""Stop the database during load: 503 with Retry-After (never a 500), nothing accepted lost,
everything resumes by itself."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import Practice
from tests.faults.http_load import fault_under_load
from tests.faults.scoreboard import Scoreboard
from tests.integration.test_database_outage import database_stopped
from tests.support.infra import Infrastructure


async def outage_under_load(
    practice: Practice, infra: Infrastructure, scoreboard: Scoreboard, outage_seconds: float
) -> None:
    if not infra.local:
        pytest.fail("this test stops the local FerretDB; run it against scripts/infra")

    async def stop_database_for_a_while() -> None:
        with database_stopped():
            await asyncio.sleep(outage_seconds)  # the outage itself is the injected fault

    outcome = await fault_under_load(practice, stop_database_for_a_while, recovery_timeout=60)
    scoreboard.record(
        f"database stopped {outage_seconds:.0f}s under load",
        "503 + Retry-After only, 0 accepted lost, resumes",
        outcome.counts,
        met=outcome.clean,
    )
    assert outcome.server_errors == [], f"server errors: {sorted(set(outcome.server_errors))}"
    assert outcome.log.unavailable_without_retry_after == 0
    assert outcome.lost == []
    if outage_seconds >= 20:
        assert outcome.log.statuses.count(503) > 0, "the gateway never said it was unavailable"


async def test_database_stopped_briefly_under_load(
    practice: Practice, infra: Infrastructure, scoreboard: Scoreboard
) -> None:
    await outage_under_load(practice, infra, scoreboard, outage_seconds=5)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_database_stopped_twenty_seconds_under_load(
    practice: Practice, infra: Infrastructure, scoreboard: Scoreboard
) -> None:
    await outage_under_load(practice, infra, scoreboard, outage_seconds=20)
