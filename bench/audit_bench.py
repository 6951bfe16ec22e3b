"""Audit ingest: events/s through RabbitMQ into the hash-chained store, against a raw insert loop.

Run alone with `.venv/bin/python -m bench.audit_bench`, or `await audit_bench()` from the harness.
Both sides write the same documents (projected and sealed audit records) into the same database
server, into collections with the same indexes, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.exceptions
from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.adapters.store import AuditStore
from sotto_audit.config import AuditSettings
from sotto_audit.domain import GENESIS, project, seal
from sotto_contracts.base import utc_now
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.gateway import LinkOpened
from sotto_kit.mongo import Document, connect
from tests.support.amqp import delete_namespace
from tests.support.processes import ServiceProcess
from tests.support.serving import free_port
from tests.support.system import WORKERS

EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "3000"))
LOGS = Path(__file__).resolve().parents[1] / "test-output" / "bench"
PRACTICES = 4
GOAL_RATIO = 0.6


def _events(count: int) -> list[LinkOpened]:
    return [
        LinkOpened(
            practice_id=f"practice-{n % PRACTICES}",
            link_id=f"link-{n}",
            recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id=f"client-{n % 97}"),
            conversation_id=f"conv-{n % 211}",
        )
        for n in range(count)
    ]


async def _raw_insert_rate(settings: AuditSettings, events: list[LinkOpened]) -> float:
    """Documents/s of a plain insert_one loop of the same sealed records."""
    client = connect(settings.mongodb_url)
    database = client[f"{settings.database}_raw"]
    try:
        await AuditStore(database).ensure_indexes()
        by_practice: dict[str, list[Any]] = {}
        for event in events:
            by_practice.setdefault(event.practice_id, []).append(project(event))
        documents = [
            asdict(record) | {"category": record.category.value}
            for drafts in by_practice.values()
            for record in seal(drafts, GENESIS, utc_now())
        ]
        records = database["records"]
        started = time.perf_counter()
        for document in documents:
            await records.insert_one(document)
        return len(documents) / (time.perf_counter() - started)
    finally:
        await client.drop_database(database.name)
        await client.close()


async def _stored(heads: AsyncCollection[Document], practices: list[str]) -> int:
    """Records acknowledged so far: the sum of the practices' watermarks, read by `_id` (a
    count of the records would scan them on FerretDB, competing with the service it times)."""
    return sum([document["sequence"] async for document in heads.find({"_id": {"$in": practices}})])


async def _audit_rate(settings: AuditSettings, events: list[LinkOpened]) -> float:
    """Events/s from the first publish until the audit service, a process of its own as in
    production, has stored them all."""
    service = ServiceProcess.worker(
        "audit",
        WORKERS["audit"],
        free_port(),
        {
            **os.environ,
            "RABBITMQ_URL": settings.rabbitmq_url,
            "MONGODB_URL": settings.mongodb_url,
            "SOTTO_NAMESPACE": settings.namespace,
            "AUDIT_DATABASE": settings.database,
            "LOG_LEVEL": "WARNING",
        },
        LOGS / f"{settings.namespace}-audit.log",
    )
    client = connect(settings.mongodb_url)
    heads = client[settings.database]["heads"]
    connection = await aio_pika.connect_robust(settings.rabbitmq_url)
    try:
        service.start()
        await service.wait_healthy(timeout=180)
        events_queue = settings.topology.work_queue("audit", "events", "#").name
        while True:  # health answers before the subscriber consumes
            probe = await connection.channel()
            try:
                declared = await probe.declare_queue(events_queue, passive=True)
                if declared.declaration_result.consumer_count:
                    break
            except aio_pika.exceptions.ChannelNotFoundEntity:
                pass
            await asyncio.sleep(0.1)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.topology.events.name, ensure=False)
        bodies = [(event.ROUTING_KEY, event.model_dump_json().encode()) for event in events]
        practices = sorted({event.practice_id for event in events})
        started = time.perf_counter()
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=key,
                )
                for key, body in bodies
            )
        )
        while True:
            if await _stored(heads, practices) >= len(events):
                break
            await asyncio.sleep(0.1)
        return len(events) / (time.perf_counter() - started)
    finally:
        await connection.close()
        service.stop()
        await asyncio.to_thread(
            delete_namespace, os.environ.get("RABBITMQ_MANAGEMENT_URL"), settings.namespace
        )
        await client.drop_database(settings.database)
        await client.close()


async def audit_bench(events: int = EVENTS) -> dict[str, Any]:
    """Measure both rates in this run; returns the figures and their ratio."""
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    settings = AuditSettings(
        rabbitmq_url=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        mongodb_url=os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"),
        namespace=namespace,
        database=f"{namespace}_audit",
        log_level="WARNING",
    )
    sample = _events(events)
    raw = await _raw_insert_rate(settings, sample)
    audit = await _audit_rate(settings, sample)
    return {
        "scenario": "audit ingest",
        "events": events,
        "audit_events_per_second": round(audit, 1),
        "raw_insert_loop_per_second": round(raw, 1),
        "ratio": round(audit / raw, 3),
        "goal_ratio": GOAL_RATIO,
    }


def main() -> None:
    result = asyncio.run(audit_bench())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
