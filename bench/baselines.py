"""Raw baselines measured in the same run as the system: what the tools alone can do."""

from __future__ import annotations

import asyncio
import time
import uuid
from email.message import EmailMessage

import aio_pika
import aiosmtplib


async def raw_smtp_rate(host: str, port: int, count: int, connections: int) -> float:
    """Emails/s of a bare aiosmtplib loop over `connections` reused connections."""
    per_connection = count // connections

    async def loop(index: int) -> None:
        client = aiosmtplib.SMTP(hostname=host, port=port)
        await client.connect()
        try:
            for n in range(per_connection):
                message = EmailMessage()
                message["From"] = "bench@sotto.local"
                message["To"] = f"raw{index}-{n}@bench.example.org"
                message["Subject"] = "You have a secure message waiting"
                message.set_content("A new secure message is waiting in your portal.")
                await client.send_message(message)
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(connections)))
    return per_connection * connections / (time.perf_counter() - started)


async def raw_rabbitmq_rate(url: str, count: int) -> float:
    """Messages/s of persistent publish (confirms, awaited concurrently) and consume-ack."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=256)
        queue = await channel.declare_queue(
            f"bench.raw.{uuid.uuid4().hex[:8]}",
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        done = asyncio.get_running_loop().create_future()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == count and not done.done():
                done.set_result(None)

        consumer_tag = await queue.consume(on_message)
        body = b'{"practice_id": "bench", "message_id": "x"}'
        started = time.perf_counter()
        batch = 500
        for offset in range(0, count, batch):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue.name,
                    )
                    for _ in range(min(batch, count - offset))
                )
            )
        await done
        rate = count / (time.perf_counter() - started)
        await queue.cancel(consumer_tag)  # or the broker's cancel is logged as a surprise
        await queue.delete(if_unused=False, if_empty=False)
        return rate
    finally:
        await connection.close()
