"""Publish an appointment request and a statement-ready event into Sotto."""

import asyncio
import os
from datetime import UTC, datetime, timedelta

import aio_pika

from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.inbound import AppointmentRequested, StatementReady
from sotto_contracts.topology import Topology


async def main() -> None:
    url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    topology = Topology(namespace=os.environ.get("SOTTO_NAMESPACE", "sotto"))
    events = [
        AppointmentRequested(
            practice_id="demo",
            request_id="req-1001",
            client_id="client-alex",
            clinician_id="staff-clinician",
            requested_start=datetime.now(UTC) + timedelta(days=3),
            details="Tuesday evenings work best for me.",
        ),
        StatementReady(
            practice_id="demo",
            client_id="client-sam",
            recipients=[
                ParticipantRef(kind=ParticipantKind.CLIENT, id="client-sam"),
                ParticipantRef(kind=ParticipantKind.CONTACT, id="contact-robin"),
            ],
            reference_id="statement-2026-03",
            content="Your March statement is ready in the portal.",
        ),
    ]
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.inbound.name)
        for event in events:
            await exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    content_type="application/json",
                    message_id=str(event.message_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=event.ROUTING_KEY,
            )


if __name__ == "__main__":
    asyncio.run(main())
