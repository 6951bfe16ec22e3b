"""End-to-end fixtures: the four services as processes, a seeded demo practice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sotto_cli.demo import demo_practice
from tests.e2e.portal import staff_client
from tests.support.amqp import Amqp
from tests.support.infra import REPO, Infrastructure
from tests.support.system import RunningSystem, running_system
from tests.support.waiting import eventually

OUTPUT = REPO / "test-output" / "e2e"


@dataclass
class Practice:
    practice_id: str
    domain: str
    system: RunningSystem

    def email(self, local: str) -> str:
        return f"{local}@{self.domain}"

    def staff(self, staff_id: str) -> httpx.AsyncClient:
        return staff_client(self.system.gateway_url, self.practice_id, staff_id)


@pytest.fixture
async def system(
    infra: Infrastructure, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[RunningSystem]:
    log_dir: Path = OUTPUT / request.node.name
    async with running_system(infra, namespace, log_dir) as running:
        yield running


@pytest.fixture
async def practice(system: RunningSystem, amqp: Amqp, namespace: str) -> Practice:
    """The demo practice (owner, clinician, biller; Alex; Sam with partner Robin), delay 0."""
    domain = f"{namespace}.example.org"
    for event in demo_practice(namespace, domain):
        await amqp.publish(event)
    seeded = Practice(namespace, domain, system)
    async with seeded.staff("staff-owner") as owner:

        async def settings_saved() -> tuple[int, str]:
            response = await owner.patch(
                "/api/staff/settings",
                json={
                    "client_notification_delay_seconds": 0,
                    "staff_notification_delay_seconds": 0,
                },
            )
            return response.status_code, response.text[:200]

        try:
            await eventually(
                settings_saved, until=lambda s: s[0] == 200, what="owner can edit settings"
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{system.recent_problems()}") from error
    return seeded
