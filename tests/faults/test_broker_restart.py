"""Restart RabbitMQ under load: nothing accepted lost, every service back within 10 s.

Soak only: restarting the one local broker disrupts every other test run on the machine.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.e2e.conftest import Practice
from tests.faults.http_load import fault_under_load
from tests.faults.scoreboard import Scoreboard
from tests.support.infra import REPO, Infrastructure

RECONNECT_SECONDS = 10


async def rabbitmqctl(*arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *arguments,
        cwd=REPO,
        env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, output.decode()


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_broker_restart_under_load(
    practice: Practice, infra: Infrastructure, scoreboard: Scoreboard
) -> None:
    if not infra.local:
        pytest.fail("this test restarts the local RabbitMQ node; run it against scripts/infra")

    async def restart_broker() -> None:
        await rabbitmqctl("stop_app")
        await rabbitmqctl("start_app")

    outcome = await fault_under_load(practice, restart_broker, recovery_timeout=RECONNECT_SECONDS)
    scoreboard.record(
        "RabbitMQ restarted under load",
        f"0 accepted lost, all services healthy within {RECONNECT_SECONDS}s",
        outcome.counts,
        met=outcome.clean,
    )
    assert outcome.lost == []
    assert outcome.server_errors == [], f"server errors: {sorted(set(outcome.server_errors))}"
