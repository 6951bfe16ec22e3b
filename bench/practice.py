"""A benchmark practice: seeded through inbound events, ready once every projection has it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx

from bench.loadgen import HttpPool
from sotto_contracts.base import Message
from sotto_contracts.common import StaffRole
from sotto_contracts.inbound import ClientUpserted, PracticeUpserted, StaffUpserted
from sotto_contracts.topology import Topology
from sotto_kit.mongo import connect
from tests.e2e.portal import staff_token
from tests.support.amqp import delete_namespace
from tests.support.infra import REPO, Infrastructure, drop_namespace_databases
from tests.support.system import RunningSystem, running_system
from tests.support.waiting import eventually

OWNER = "staff-owner"
CLINICIAN = "staff-clinician"
CLIENT_DATE_OF_BIRTH = date(1990, 4, 12)
LOGS = REPO / "test-output" / "bench"
PUBLISH_BATCH = 500
NO_STAFF_EMAILS = 86_400


@dataclass
class BenchPractice:
    """Clients are handed out in turn, so a late email never meets a newer message."""

    practice_id: str
    clients: int
    _next_client: int = 0

    def next_clients(self, count: int) -> list[int]:
        chosen = [(self._next_client + offset) % self.clients for offset in range(count)]
        self._next_client = (self._next_client + count) % self.clients
        return chosen

    @property
    def domain(self) -> str:
        return f"{self.practice_id}.bench.example.org"

    def client_id(self, index: int) -> str:
        return f"client-{index}"

    def client_email(self, index: int) -> str:
        return f"c{index}@{self.domain}"

    def client_index(self, address: str) -> int | None:
        local, _, domain = address.lower().partition("@")
        if domain != self.domain or not local.startswith("c") or not local[1:].isdigit():
            return None
        return int(local[1:])


def seed_events(practice: BenchPractice) -> list[Message]:
    practice_id = practice.practice_id
    events: list[Message] = [
        PracticeUpserted(practice_id=practice_id, slug=practice_id, display_name="Bench Practice"),
        StaffUpserted(
            practice_id=practice_id,
            staff_id=OWNER,
            display_name="Bench Owner",
            email=f"owner@{practice.domain}",
            roles=[StaffRole.OWNER],
            can_view_others_conversations=True,
        ),
        StaffUpserted(
            practice_id=practice_id,
            staff_id=CLINICIAN,
            display_name="Bench Clinician",
            email=f"clinician@{practice.domain}",
            roles=[StaffRole.CLINICIAN],
        ),
    ]
    events += [
        ClientUpserted(
            practice_id=practice_id,
            client_id=practice.client_id(index),
            display_name=f"Client {index}",
            email=practice.client_email(index),
            date_of_birth=CLIENT_DATE_OF_BIRTH,
            primary_clinician_id=CLINICIAN,
            clinician_ids=[CLINICIAN],
        )
        for index in range(practice.clients)
    ]
    return events


async def publish_all(rabbitmq_url: str, namespace: str, events: list[Message]) -> None:
    """Persistent, confirmed publishes, awaited in batches."""
    topology = Topology(namespace=namespace)
    connection = await aio_pika.connect_robust(rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        for start in range(0, len(events), PUBLISH_BATCH):
            batch = events[start : start + PUBLISH_BATCH]
            for name in {topology.exchange_of(type(event)).name for event in batch}:
                if name not in exchanges:
                    exchanges[name] = await channel.get_exchange(name, ensure=False)
            await asyncio.gather(
                *(
                    exchanges[topology.exchange_of(type(event)).name].publish(
                        aio_pika.Message(
                            event.model_dump_json().encode(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=event.ROUTING_KEY,
                    )
                    for event in batch
                )
            )
    finally:
        await connection.close()


async def wait_for_clients(
    infra: Infrastructure, system: RunningSystem, practice: BenchPractice, timeout: float
) -> float:
    """Seconds until the gateway's and conversations' projections hold every client."""
    client = connect(infra.mongodb_url)
    started = time.perf_counter()
    wanted = {"practice_id": practice.practice_id, "kind": "client"}
    try:
        for service in ("gateway", "conversations"):
            people = client[system.database(service)]["people"]
            while await people.count_documents(wanted) < practice.clients:
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{service} projection never reached {practice.clients}")
                await asyncio.sleep(0.5)
        return time.perf_counter() - started
    finally:
        await client.close()


def owner_pool(system: RunningSystem, practice: BenchPractice) -> HttpPool:
    token = staff_token(practice.practice_id, OWNER)
    return HttpPool(
        system.gateway_url,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def send_json(pool: HttpPool, method: str, path: str, payload: Mapping[str, Any]) -> int:
    return (await pool.request(method, path, json.dumps(payload).encode())).status


async def immediate_client_emails(system: RunningSystem, practice: BenchPractice) -> None:
    """Client notifications without delay, none for staff (they would skew the counts)."""
    pool = owner_pool(system, practice)
    settings = {
        "client_notification_delay_seconds": 0,
        "staff_notification_delay_seconds": NO_STAFF_EMAILS,
    }
    try:
        deadline = time.monotonic() + 60
        while await send_json(pool, "PATCH", "/api/staff/settings", settings) != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the owner could never change the settings")
            await asyncio.sleep(0.2)
    finally:
        pool.close()


@asynccontextmanager
async def system_for(
    infra: Infrastructure,
    namespace: str,
    *,
    instances: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[RunningSystem]:
    """All services as processes (logs under test-output/bench/<namespace>)."""
    defaults = {
        "LOG_LEVEL": "WARNING",
        "NOTIFIER_RATE_PER_SECOND": "100000",
        "NOTIFIER_BURST": "10000",
    }
    log_dir: Path = LOGS / namespace
    async with running_system(
        infra, namespace, log_dir, env={**defaults, **(env or {})}, instances=instances
    ) as system:
        yield system


async def seed(
    infra: Infrastructure, system: RunningSystem, practice: BenchPractice, timeout: float = 900
) -> float:
    """Publish the practice's events and wait for the projections; returns seconds taken."""
    started = time.perf_counter()
    await publish_all(infra.rabbitmq_url, system.namespace, seed_events(practice))
    await wait_for_clients(infra, system, practice, timeout)
    await immediate_client_emails(system, practice)
    return time.perf_counter() - started


def purge_queues(management_url: str | None, namespace: str) -> None:
    """Empty the namespace's queues: requests an overloaded gateway gave up on stay queued."""
    if not management_url:
        return
    with httpx.Client(base_url=management_url, auth=("guest", "guest"), timeout=30) as client:
        listing = client.get("/api/queues/%2F", params={"columns": "name"})
        listing.raise_for_status()
        for item in listing.json():
            name = str(item.get("name", ""))
            if name.startswith(f"{namespace}."):
                client.delete(f"/api/queues/%2F/{quote(name, safe='')}/contents")


def _queued_messages(management_url: str, namespace: str) -> int:
    with httpx.Client(base_url=management_url, auth=("guest", "guest"), timeout=30) as client:
        listing = client.get("/api/queues/%2F", params={"columns": "name,messages"})
        listing.raise_for_status()
        return sum(
            int(item.get("messages") or 0)
            for item in listing.json()
            if str(item.get("name", "")).startswith(f"{namespace}.")
        )


async def wait_for_quiet_queues(
    management_url: str | None, namespace: str, timeout: float = 300.0
) -> None:
    """Wait until the namespace's queues are empty: an overloaded step leaves work queued, and
    a scenario measured meanwhile measures that backlog instead."""
    if not management_url:
        return
    await eventually(
        lambda: asyncio.to_thread(_queued_messages, management_url, namespace),
        until=lambda queued: queued == 0,
        timeout=timeout,
        interval=1.0,
        what=f"the {namespace} queues to drain",
    )


async def drop_namespace(infra: Infrastructure, namespace: str) -> None:
    """Drop the namespace's databases, queues and exchanges."""
    await asyncio.to_thread(drop_namespace_databases, infra.mongodb_url, [namespace])
    await asyncio.to_thread(delete_namespace, infra.rabbitmq_management_url, namespace)
