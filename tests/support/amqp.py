"""Raw RabbitMQ access for tests: publish anything, read what was parked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aio_pika

from sotto_contracts.base import Message
from sotto_contracts.topology import PARKING_REASON_HEADER, Topology

CONNECT_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Parked:
    body: bytes
    headers: dict[str, Any]

    @property
    def reason(self) -> str:
        value = self.headers.get(PARKING_REASON_HEADER, "")
        return value.decode() if isinstance(value, bytes) else str(value)


async def _connect(url: str, attempts: int = 3) -> aio_pika.abc.AbstractConnection:
    """Connect, trying again after a handshake the broker never answered: one such connection
    once held a `make bench` run for ten minutes (the TCP connection was up, RabbitMQ never
    logged it)."""
    for _ in range(attempts - 1):
        with contextlib.suppress(TimeoutError):
            return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)


async def publish_many(
    url: str, topology: Topology, messages: Sequence[Message], *, batch_size: int = 500
) -> None:
    """Publish persistently on one confirmed channel, confirms awaited a batch at a time."""
    connection = await _connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchanges = {
            name: await channel.get_exchange(name, ensure=False)
            for name in {topology.exchange_of(type(message)).name for message in messages}
        }
        for start in range(0, len(messages), batch_size):
            await asyncio.gather(
                *(
                    exchanges[topology.exchange_of(type(message)).name].publish(
                        aio_pika.Message(
                            message.model_dump_json().encode(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=str(message.message_id),
                        ),
                        routing_key=message.ROUTING_KEY,
                    )
                    for message in messages[start : start + batch_size]
                )
            )
    finally:
        await connection.close()


class Amqp:
    def __init__(self, url: str, topology: Topology) -> None:
        self.url = url
        self.topology = topology
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def _channel(self) -> aio_pika.abc.AbstractChannel:
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self.url)
        return await self._connection.channel()

    async def publish(self, message: Message) -> None:
        await self.publish_raw(
            message.model_dump_json().encode(),
            exchange=self.topology.exchange_of(type(message)).name,
            routing_key=message.ROUTING_KEY,
        )

    async def publish_raw(self, body: bytes, *, exchange: str, routing_key: str) -> None:
        channel = await self._channel()
        try:
            target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key,
            )
        finally:
            await channel.close()

    async def parked(self, service: str) -> list[Parked]:
        """Everything in a service's parking queue (left there: read and requeued)."""
        channel = await self._channel()
        try:
            queue = await channel.get_queue(self.topology.parking_queue(service).name)
            found: list[Parked] = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                found.append(Parked(message.body, dict(message.headers or {})))
            return found
        finally:
            await channel.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def delete_namespace(management_url: str | None, namespace: str) -> None:
    """Remove a test's queues and exchanges so thousands of quorum queues never pile up."""
    if not management_url:
        return
    import httpx

    prefix = f"{namespace}."
    with httpx.Client(base_url=management_url, auth=("guest", "guest"), timeout=30) as client:
        for kind in ("queues", "exchanges"):
            try:
                listing = client.get(f"/api/{kind}/%2F", params={"columns": "name"})
            except httpx.TransportError:
                return
            if listing.status_code != 200:
                return
            for item in listing.json():
                name = str(item.get("name", ""))
                if name.startswith(prefix):
                    client.delete(f"/api/{kind}/%2F/{quote(name, safe='')}")
