"""Helpers for notifier tests: commands, unique addresses, an event tap, a notifier process."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology
from sotto_notifier.config import NotifierSettings
from tests.support.infra import REPO
from tests.support.processes import VENV_BIN, ServiceProcess
from tests.support.serving import free_port
from tests.support.system import WORKERS
from tests.support.waiting import eventually

PRACTICE_NAME = "Lakeside Counseling"


def address(local: str = "client") -> str:
    return f"{local}+{uuid.uuid4().hex[:12]}@example.org"


def command(
    to_address: str,
    *,
    kind: NotificationKind = NotificationKind.SECURE_MESSAGE_WAITING,
    notification_id: str | None = None,
    discreet: bool = False,
    practice_name: str = PRACTICE_NAME,
) -> SendNotification:
    return SendNotification(
        practice_id="practice-1",
        notification_id=notification_id or f"n-{uuid.uuid4().hex}",
        kind=kind,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id=f"c-{uuid.uuid4().hex[:8]}"),
        to_address=to_address,
        practice_display_name=practice_name,
        link_url=f"https://portal.example.org/l/{uuid.uuid4().hex}",
        discreet=discreet,
        conversation_id="conv-1",
    )


class EventTap:
    """A private queue bound to the notifier's events; read everything that arrived so far."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self._topology = topology
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self._topology.events.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(exclusive=True)
        await self._queue.bind(exchange, routing_key="notifier.#")

    async def drain(self) -> list[dict[str, Any]]:
        assert self._queue is not None
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            self.events.append({"routing_key": message.routing_key, **json.loads(message.body)})
        return self.events

    def of(self, notification_id: str) -> list[str]:
        """Routing keys of one notification's events in order; a re-published event counts once."""
        seen: dict[str, str] = {}
        for event in self.events:
            if event.get("notification_id") == notification_id:
                seen.setdefault(str(event["message_id"]), str(event["routing_key"]))
        return list(seen.values())

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


def notifier_environment(settings: NotifierSettings) -> dict[str, str]:
    """The environment that makes a `faststream run` notifier use these settings."""
    return {
        **os.environ,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "MONGODB_URL": settings.mongodb_url,
        "SOTTO_NAMESPACE": settings.namespace,
        "SOTTO_DELIVERY_LIMIT": str(settings.delivery_limit),
        "LOG_LEVEL": settings.log_level,
        "NOTIFIER_DATABASE": settings.database,
        "NOTIFIER_SMTP_HOST": settings.smtp_host,
        "NOTIFIER_SMTP_PORT": str(settings.smtp_port),
        "NOTIFIER_SMTP_TLS": settings.smtp_tls.value,
        "NOTIFIER_POOL_SIZE": str(settings.pool_size),
        "NOTIFIER_PREFETCH": str(settings.prefetch),
        "NOTIFIER_RATE_PER_SECOND": str(settings.rate_per_second),
        "NOTIFIER_BURST": str(settings.burst),
        "NOTIFIER_RETRY_DELAYS_SECONDS": str(settings.retry_delays_seconds),
        "NOTIFIER_OUTBOX_INTERVAL_SECONDS": str(settings.outbox_interval_seconds),
        "NOTIFIER_SWEEP_INTERVAL_SECONDS": str(settings.sweep_interval_seconds),
        "NOTIFIER_STALE_SENDING_SECONDS": str(settings.stale_sending_seconds),
        **(
            {"NOTIFIER_ADDRESS_HASH_KEY": settings.address_hash_key.get_secret_value()}
            if settings.address_hash_key
            else {}
        ),
    }


def notifier_process(settings: NotifierSettings, log_path: Path) -> ServiceProcess:
    """One notifier as its own OS process on a free port (start it with `async with`)."""
    return ServiceProcess.worker(
        "notifier", WORKERS["notifier"], free_port(), notifier_environment(settings), log_path
    )


async def forget_mail(api_url: str, summaries: list[dict[str, Any]], marker: str) -> int:
    """Delete from the shared catcher, by id, the emails of one test run (recipients carrying
    `marker`), so that thousands of them do not slow every other test's lookups."""
    ids = [
        str(summary["ID"])
        for summary in summaries
        if any(marker in str(to.get("Address", "")) for to in summary.get("To") or [])
    ]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        for start in range(0, len(ids), 5000):
            response = await client.request(
                "DELETE", "/api/v1/messages", json={"IDs": ids[start : start + 5000]}
            )
            response.raise_for_status()
    return len(ids)


@dataclass(frozen=True)
class OwnCatcher:
    smtp_port: int
    api_url: str


@asynccontextmanager
async def own_catcher() -> AsyncIterator[OwnCatcher]:
    """A catcher of this test's own, running the repository's `scripts/smtp_catcher.py`: the
    shared one may predate a fault mode, and its per-address fault counters outlive tests."""
    catcher = OwnCatcher(free_port(), f"http://127.0.0.1:{free_port()}")
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "python"),
        str(REPO / "scripts" / "smtp_catcher.py"),
        "--smtp-port",
        str(catcher.smtp_port),
        "--http-port",
        catcher.api_url.rpartition(":")[2],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=catcher.api_url, timeout=5) as client:

            async def ready() -> bool:
                assert process.returncode is None, "the catcher exited"
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, what="own SMTP catcher")
        yield catcher
    finally:
        process.terminate()
        await process.wait()
