"""The RabbitMQ topology, declared once and used by every service and practice system.

All names are prefixed with a namespace (default `sotto`) so tests and side-by-side
deployments can run on one broker without sharing queues.

- `<ns>.events`   topic exchange for events (`<owner>.<name>.v<N>`)
- `<ns>.commands` topic exchange for commands and request/reply queries
- `<ns>.inbound`  topic exchange for practice-system events (`practice.<name>.v<N>`)
- `<ns>.dlx`      direct dead-letter exchange; routing key = consuming service
- `<ns>.<service>.<purpose>` quorum work queues, dead-lettered to the service's parking queue
- `<ns>.<service>.parking`   where poison messages and over-delivered messages end, with reason
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from sotto_contracts.base import Message

DEFAULT_NAMESPACE = "sotto"
DEFAULT_DELIVERY_LIMIT = 20

ExchangeName = Literal["events", "commands", "inbound"]

PARKING_REASON_HEADER = "x-parking-reason"
PARKING_QUEUE_HEADER = "x-original-queue"
ORIGINAL_EXCHANGE_HEADER = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"
# On a request: when its caller stops waiting for the reply (Unix time, milliseconds).
REPLY_DEADLINE_HEADER = "x-reply-deadline"


def exchange_for(message_type: type[Message]) -> ExchangeName:
    """Which exchange a message type travels on."""
    match message_type.KIND:
        case "event":
            return "events"
        case "inbound":
            return "inbound"
        case "command" | "query":
            return "commands"


@dataclass(frozen=True)
class Topology:
    namespace: str = DEFAULT_NAMESPACE
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def exchange(self, name: ExchangeName) -> RabbitExchange:
        return RabbitExchange(f"{self.namespace}.{name}", type=ExchangeType.TOPIC, durable=True)

    @property
    def events(self) -> RabbitExchange:
        return self.exchange("events")

    @property
    def commands(self) -> RabbitExchange:
        return self.exchange("commands")

    @property
    def inbound(self) -> RabbitExchange:
        return self.exchange("inbound")

    @property
    def dead_letter(self) -> RabbitExchange:
        return RabbitExchange(f"{self.namespace}.dlx", type=ExchangeType.DIRECT, durable=True)

    def exchange_of(self, message_type: type[Message]) -> RabbitExchange:
        return self.exchange(exchange_for(message_type))

    def work_queue(
        self,
        service: str,
        purpose: str,
        routing_key: str,
        *,
        single_active_consumer: bool = False,
    ) -> RabbitQueue:
        """A durable quorum queue bound by `routing_key`, dead-lettered to the service's parking.

        With `single_active_consumer`, one instance consumes at a time and the others stand by
        (for consumers whose effects must happen in queue order).
        """
        arguments: QuorumQueueArgs = {
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter.name,
            "x-dead-letter-routing-key": service,
        }
        if single_active_consumer:
            arguments["x-single-active-consumer"] = True
        return RabbitQueue(
            f"{self.namespace}.{service}.{purpose}",
            queue_type=QueueType.QUORUM,
            routing_key=routing_key,
            arguments=arguments,
        )

    def queue_for(self, service: str, message_type: type[Message]) -> RabbitQueue:
        """The queue a service consumes one message type from, named after its routing key."""
        key = message_type.ROUTING_KEY
        return self.work_queue(service, key, key)

    def parking_queue(self, service: str) -> RabbitQueue:
        return RabbitQueue(
            f"{self.namespace}.{service}.parking",
            queue_type=QueueType.QUORUM,
            routing_key=service,
        )

    def delay_queue(self, service: str, seconds: int, target: ExchangeName) -> RabbitQueue:
        """Messages wait `seconds`, then dead-letter back to `target` with their routing key."""
        return RabbitQueue(
            f"{self.namespace}.{service}.delay.{seconds}s",
            queue_type=QueueType.QUORUM,
            routing_key=f"{self.namespace}.{service}.delay.{seconds}s",
            arguments={
                "x-message-ttl": seconds * 1000,
                "x-dead-letter-exchange": self.exchange(target).name,
            },
        )
