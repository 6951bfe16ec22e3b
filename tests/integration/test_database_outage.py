"""Health reports a database outage and recovers by itself when the database is back; what
the database acknowledged before it crashed is still there afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app
from sotto_kit.mongo import Document, ensure_collections
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


def crash_and_restart_database() -> None:
    subprocess.run([str(INFRA_SCRIPT), "stop-db", "--kill"], check=True, cwd=REPO)
    subprocess.run([str(INFRA_SCRIPT), "start-db"], check=True, cwd=REPO)  # waits for a ping


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


async def test_writes_acknowledged_before_the_database_crashes_survive_it(
    infra: Infrastructure, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """The local FerretDB commits without an fsync each time (SQLite's WAL with
    synchronous=NORMAL): a crash of FerretDB itself must still lose nothing it acknowledged."""
    if not infra.local:
        pytest.fail("this test kills the local FerretDB; run it against scripts/infra")
    collection = mongo[f"{namespace}_crash"]["acknowledged"]
    await ensure_collections([collection])
    for batch in range(20):
        await collection.insert_many([{"_id": f"{batch}-{n}"} for n in range(10)])
    await collection.update_one({"_id": "19-9"}, {"$set": {"last": True}})

    crash_and_restart_database()

    assert await collection.count_documents({}) == 200
    assert await collection.find_one({"_id": "19-9"}) == {"_id": "19-9", "last": True}
    await mongo.drop_database(f"{namespace}_crash")
