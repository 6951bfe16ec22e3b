"""Fault and attack fixtures: the whole system as processes, a scoreboard printed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import practice  # noqa: F401  (seeded demo practice on `system` below)
from tests.faults.scoreboard import SCOREBOARD, Scoreboard
from tests.support.infra import REPO, Infrastructure
from tests.support.system import RunningSystem, running_system

OUTPUT = REPO / "test-output" / "faults"


@pytest.fixture
async def system(
    infra: Infrastructure, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[RunningSystem]:
    async with running_system(infra, namespace, OUTPUT / request.node.name) as running:
        yield running


@pytest.fixture(
    params=[pytest.param(1, id="quick"), pytest.param(10, id="soak", marks=pytest.mark.soak)]
)
def scale(request: pytest.FixtureRequest) -> int:
    """Tests that are cheap enough for both runs: 1 in `make test`, 10 in `make soak`, so the
    soak table shows them too (with ten times the timing samples)."""
    value: int = request.param
    return value


@pytest.fixture
def scoreboard() -> Scoreboard:
    return SCOREBOARD


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCOREBOARD.outcomes:
        terminalreporter.write_sep("=", "fault and attack scoreboard")
        for line in SCOREBOARD.table():
            terminalreporter.write_line(line)
