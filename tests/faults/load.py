"""Bulk publishing with publisher confirms in windows, and unique notification commands."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika

from sotto_contracts.base import Message
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification

WINDOW = 100


async def publish_confirmed(
    url: str, exchange_name: str, messages: Sequence[tuple[str, bytes]]
) -> None:
    """Publish (routing key, body) pairs, waiting for confirms a window at a time."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        for start in range(0, len(messages), WINDOW):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=routing_key,
                    )
                    for routing_key, body in messages[start : start + WINDOW]
                )
            )
    finally:
        await connection.close()


def notification(notification_id: str, address: str) -> SendNotification:
    return SendNotification(
        practice_id="practice-faults",
        notification_id=notification_id,
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id=f"client-{notification_id}"),
        to_address=address,
        practice_display_name="Lakeside Counseling",
        link_url="https://portal.example.org/portal",
    )


def as_publishable(commands: Sequence[Message]) -> list[tuple[str, bytes]]:
    return [(item.ROUTING_KEY, item.model_dump_json().encode()) for item in commands]
