"""Notifier throughput against the raw SMTP limit, measured in one run on one machine.

    .venv/bin/python -m bench.notifier_bench [--count 10000] [--pool-size 4]   # repository root

Uses the RabbitMQ, MongoDB-compatible server and SMTP catcher named by RABBITMQ_URL,
MONGODB_URL, SMTP_HOST/SMTP_PORT (defaults: the local ones). Prints emails per second for
a raw aiosmtplib loop with `pool-size` connections (the limit), for the notifier with one
and with two instances (separate `faststream run` processes), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

from sotto_contracts.base import utc_now
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology
from sotto_kit.mongo import connect
from sotto_notifier.composing import compose_email
from sotto_notifier.domain import draft_email
from sotto_notifier.rendering import TemplateCatalogue
from tests.support.amqp import delete_namespace, publish_many
from tests.support.processes import ServiceProcess
from tests.support.serving import free_port
from tests.support.system import WORKERS

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "test-output" / "bench"
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("SMTP_PORT", "1025"))
SMTP_CATCHER_URL = os.environ.get("SMTP_CATCHER_URL", "http://127.0.0.1:8025")
RABBITMQ_MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL")


async def forget_emails(marker: str) -> None:
    """Delete this run's emails from the catcher by id (others share it; big listings are slow)."""
    async with httpx.AsyncClient(base_url=SMTP_CATCHER_URL, timeout=60) as client:
        listing = (await client.get("/api/v1/messages", params={"limit": 1_000_000})).json()
        ids = [
            summary["ID"]
            for summary in listing.get("messages") or []
            if any(marker in (to.get("Address") or "") for to in summary.get("To") or [])
        ]
        for start in range(0, len(ids), 5000):
            await client.request(
                "DELETE", "/api/v1/messages", json={"IDs": ids[start : start + 5000]}
            )


def _command(marker: str, index: int) -> SendNotification:
    return SendNotification(
        practice_id="bench-practice",
        notification_id=f"{marker}-{index}",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id=f"c{index}"),
        to_address=f"bench{index}-{marker}@example.org",
        practice_display_name="Bench Counseling",
        link_url=f"https://portal.example.org/l/{marker}{index}",
    )


async def raw_smtp_rate(count: int, connections: int) -> float:
    """The same emails through `connections` reused aiosmtplib clients, no broker, no store."""
    catalogue = TemplateCatalogue()
    marker = f"raw{uuid.uuid4().hex[:8]}"
    emails = []
    for index in range(count):
        command = _command(marker, index)
        draft = draft_email(command, "Secure portal")
        body = catalogue.render(draft.template, draft.fields)
        emails.append(
            (
                compose_email(
                    draft, body, from_address="no-reply@sotto.local", notification_id=f"{index}"
                ),
                str(command.to_address),
            )
        )

    async def worker(share: list[Any]) -> None:
        client = aiosmtplib.SMTP(
            hostname=SMTP_HOST, port=SMTP_PORT, start_tls=False, local_hostname="bench"
        )
        await client.connect()
        for message, recipient in share:
            await client.sendmail("no-reply@sotto.local", [recipient], message)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker(emails[i::connections]) for i in range(connections)))
    rate = count / (time.perf_counter() - started)
    await forget_emails(marker)
    return rate


def _instance(namespace: str, index: int, pool_size: int, prefetch: int) -> ServiceProcess:
    environment = {
        **os.environ,
        "RABBITMQ_URL": RABBITMQ_URL,
        "MONGODB_URL": MONGODB_URL,
        "SOTTO_NAMESPACE": namespace,
        "LOG_LEVEL": "WARNING",
        "NOTIFIER_DATABASE": f"{namespace}_notifier",
        "NOTIFIER_SMTP_HOST": SMTP_HOST,
        "NOTIFIER_SMTP_PORT": str(SMTP_PORT),
        "NOTIFIER_SMTP_TLS": "none",
        "NOTIFIER_POOL_SIZE": str(pool_size),
        "NOTIFIER_PREFETCH": str(prefetch),
        "NOTIFIER_RATE_PER_SECOND": "1000000",
        "NOTIFIER_BURST": "10000",
    }
    return ServiceProcess.worker(
        f"notifier-{index}",
        WORKERS["notifier"],
        free_port(),
        environment,
        LOGS / f"{namespace}-notifier-{index}.log",
    )


async def notifier_rate(count: int, instances: int, pool_size: int, prefetch: int) -> float:
    """Emails per second from the first command published to the last one delivered.

    The end is the last delivery record's `updated_at` (written when the relay accepted the
    email), so the one-second completion probe (a full scan on FerretDB, hence not more often)
    does not round the figure up.
    """
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    processes = [_instance(namespace, index, pool_size, prefetch) for index in range(instances)]
    mongo = connect(MONGODB_URL, timeout_ms=30_000)
    deliveries = mongo[f"{namespace}_notifier"]["deliveries"]
    try:
        for process in processes:
            process.start()
        await asyncio.gather(*(process.wait_healthy(timeout=180) for process in processes))
        commands = [_command(namespace, index) for index in range(count)]
        started = utc_now()
        await publish_many(RABBITMQ_URL, Topology(namespace=namespace), commands)
        delivered = 0
        while delivered < count:
            await asyncio.sleep(1.0)
            delivered = await deliveries.count_documents({"state": "delivered"})
        finished: datetime = max(  # FerretDB has no $max accumulator
            [document["updated_at"] async for document in deliveries.find({}, {"updated_at": 1})]
        )
        return count / (finished - started).total_seconds()
    finally:
        for process in processes:
            process.stop()
        # Left behind, each run's quorum queues would hold file handles of RabbitMQ 3.10's
        # limited pool until no connection could open (see bench/README.md, sixteenth round).
        await asyncio.to_thread(delete_namespace, RABBITMQ_MANAGEMENT_URL, namespace)
        await mongo.drop_database(f"{namespace}_notifier")
        await mongo.close()
        await forget_emails(namespace)


async def run_async(count: int = 10_000, pool_size: int = 4, prefetch: int = 64) -> dict[str, Any]:
    raw = await raw_smtp_rate(count, pool_size)
    print(f"notifier bench: raw aiosmtplib {raw:.1f} emails/s", file=sys.stderr, flush=True)
    one = await notifier_rate(count, 1, pool_size, prefetch)
    print(f"notifier bench: 1 instance {one:.1f} emails/s", file=sys.stderr, flush=True)
    two = await notifier_rate(count, 2, pool_size, prefetch)
    print(f"notifier bench: 2 instances {two:.1f} emails/s", file=sys.stderr, flush=True)
    return {
        "count": count,
        "smtp_connections_per_instance": pool_size,
        "raw_smtp_emails_per_second": round(raw, 1),
        "notifier_1_instance_emails_per_second": round(one, 1),
        "notifier_2_instances_emails_per_second": round(two, 1),
        "ratio_1_instance_to_raw": round(one / raw, 3),
        "ratio_2_instances_to_1": round(two / one, 3),
        "goal_70_percent_of_raw_met": one / raw >= 0.7,
        "goal_2_instances_beat_1_met": two > one,
    }


def run(count: int = 10_000, pool_size: int = 4, prefetch: int = 64) -> dict[str, Any]:
    """Entry point for `make bench`: the figures as a dict."""
    return asyncio.run(run_async(count, pool_size, prefetch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(run(args.count, args.pool_size, args.prefetch), indent=2))


if __name__ == "__main__":
    main()
