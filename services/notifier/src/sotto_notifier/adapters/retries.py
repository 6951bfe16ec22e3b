"""Retry later through RabbitMQ: a delay queue per tier dead-letters back to the commands."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.rabbit import QueueType, RabbitBroker, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from sotto_contracts.notifier import SendNotification
from sotto_contracts.topology import Topology


class DelayedRetries:
    def __init__(
        self, broker: RabbitBroker, topology: Topology, service: str, delays: Sequence[int]
    ) -> None:
        self._broker = broker
        self._queues = {
            seconds: self._tier(topology, service, seconds) for seconds in sorted(set(delays))
        }

    @staticmethod
    def _tier(topology: Topology, service: str, seconds: int) -> RabbitQueue:
        base = topology.delay_queue(service, seconds, "commands")
        base_arguments = base.arguments or {}
        arguments: QuorumQueueArgs = {
            "x-message-ttl": base_arguments["x-message-ttl"],
            "x-dead-letter-exchange": base_arguments["x-dead-letter-exchange"],
            # Messages are published to the tier directly, so they must come back under the
            # command's routing key rather than the tier's name.
            "x-dead-letter-routing-key": SendNotification.ROUTING_KEY,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        return RabbitQueue(
            base.name,
            queue_type=QueueType.QUORUM,
            routing_key=base.routing_key,
            arguments=arguments,
        )

    async def declare(self) -> None:
        for queue in self._queues.values():
            await self._broker.declare_queue(queue)

    async def schedule(self, command: SendNotification, delay_seconds: int) -> None:
        queue = self._queues[delay_seconds]
        await self._broker.publish(
            command.model_dump_json().encode(),
            routing_key=queue.name,
            persist=True,
            mandatory=True,
            message_id=str(command.message_id),
            content_type="application/json",
        )
