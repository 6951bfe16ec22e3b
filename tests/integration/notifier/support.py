"""Helpers for notifier integration tests: commands, unique addresses, and an event tap."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika

from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology

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
