"""Move parked messages back to where they came from, once the cause is fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika

from sotto_contracts.topology import (
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKING_REASON_HEADER,
    Topology,
)


@dataclass(frozen=True)
class ParkedMessage:
    exchange: str
    routing_key: str
    reason: str
    body: bytes


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def origin(headers: dict[str, Any]) -> tuple[str, str, str]:
    """(exchange, routing key, reason) of a parked or dead-lettered message."""
    if ORIGINAL_ROUTING_KEY_HEADER in headers:
        return (
            _text(headers.get(ORIGINAL_EXCHANGE_HEADER)),
            _text(headers.get(ORIGINAL_ROUTING_KEY_HEADER)),
            _text(headers.get(PARKING_REASON_HEADER)),
        )
    deaths = headers.get("x-death") or [{}]
    first = deaths[-1] if isinstance(deaths, list) and deaths else {}
    keys = first.get("routing-keys") or [""]
    return (
        _text(first.get("exchange")),
        _text(keys[0]),
        f"dead-lettered: {_text(first.get('reason'))} after {first.get('count', '?')} deliveries",
    )


async def list_parked(url: str, topology: Topology, service: str) -> list[ParkedMessage]:
    """Read a parking queue without removing anything."""
    return await _walk(url, topology, service, replay=False, limit=None)


async def replay_parked(
    url: str, topology: Topology, service: str, *, limit: int | None = None
) -> list[ParkedMessage]:
    """Republish parked messages to their original exchange and routing key; ack each after."""
    return await _walk(url, topology, service, replay=True, limit=limit)


async def _walk(
    url: str, topology: Topology, service: str, *, replay: bool, limit: int | None
) -> list[ParkedMessage]:
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(topology.parking_queue(service).name)
        found: list[ParkedMessage] = []
        while limit is None or len(found) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            exchange, routing_key, reason = origin(dict(message.headers or {}))
            found.append(ParkedMessage(exchange, routing_key, reason, message.body))
            if replay:
                target = await channel.get_exchange(exchange, ensure=False)
                await target.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        message_id=message.message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                )
                await message.ack()
        return found
    finally:
        await connection.close()
