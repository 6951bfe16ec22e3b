"""Health reports a database outage and recovers by itself when the database is back."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app
from tests.support.infra import INFRA_SCRIPT, REPO, Infrastructure
from tests.support.serving import serve
from tests.support.waiting import eventually


@contextmanager
def database_stopped() -> Iterator[None]:
    subprocess.run([str(INFRA_SCRIPT), "stop-db"], check=True, cwd=REPO)
    try:
        yield
    finally:
        subprocess.run([str(INFRA_SCRIPT), "start-db"], check=True, cwd=REPO)


async def test_health_reports_database_down_then_recovers(
    infra: Infrastructure, make_settings: Callable[..., Any]
) -> None:
    if not infra.local:
        pytest.fail("this test stops the local FerretDB; run it against scripts/infra")
    settings: AuditSettings = make_settings(AuditSettings, "audit", mongo_timeout_ms=500)
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):

        async def health() -> tuple[int, str]:
            response = await http.get("/health")
            return response.status_code, response.json()["database"]

        assert await health() == (200, "ok")
        with database_stopped():
            await eventually(health, until=lambda h: h == (503, "down"), what="db down")
        await eventually(health, until=lambda h: h == (200, "ok"), what="db back", timeout=60)
