"""`SUBSCRIPTIONS`, which every service declares at start, is exactly what the services consume."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.subscriber import RabbitSubscriber

from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app as create_audit
from sotto_contracts.subscriptions import SUBSCRIPTIONS
from sotto_contracts.topology import Topology
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.main import create_app as create_conversations
from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app as create_gateway
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app as create_notifier

Declared = tuple[str, str | None, str, tuple[tuple[str, object], ...]]


def declared(queue: RabbitQueue, exchange: str) -> Declared:
    return (queue.name, queue.routing_key, exchange, tuple(sorted(queue.arguments.items())))


def consumed_by_services() -> set[Declared]:
    brokers = [
        create_conversations(ConversationsSettings()).broker,
        create_notifier(NotifierSettings()).broker,
        create_audit(AuditSettings()).broker,
        create_gateway(GatewaySettings()).state.broker,
    ]
    found: set[Declared] = set()
    for broker in brokers:
        assert isinstance(broker, RabbitBroker)
        for subscriber in broker.subscribers:
            assert isinstance(subscriber, RabbitSubscriber)
            found.add(declared(subscriber.queue, subscriber.exchange.name))
    return found


def test_the_subscription_list_is_what_the_services_consume() -> None:
    topology = Topology()
    listed = {
        declared(
            topology.work_queue(
                item.service,
                item.purpose,
                item.routing_key,
                single_active_consumer=item.single_active_consumer,
            ),
            topology.exchange(item.exchange).name,
        )
        for item in SUBSCRIPTIONS
    }
    assert listed == consumed_by_services()
