"""Every queue of the system: which service consumes what, from which exchange.

Each service declares all of them when it starts, not only its own, so a message published
before its consumer first started (a first deploy, a service started late) waits in its queue
instead of being dropped as unroutable. `tests/unit/test_subscriptions.py` checks this list
against the subscribers each service actually registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto_contracts import audit, conversations, inbound, notifier
from sotto_contracts.base import Message
from sotto_contracts.topology import ExchangeName, exchange_for


@dataclass(frozen=True)
class Subscription:
    service: str
    purpose: str
    routing_key: str
    exchange: ExchangeName
    single_active_consumer: bool = False


def _each(service: str, *message_types: type[Message]) -> tuple[Subscription, ...]:
    """One queue per message type, named after its routing key (`Topology.queue_for`)."""
    return tuple(
        Subscription(service, kind.ROUTING_KEY, kind.ROUTING_KEY, exchange_for(kind))
        for kind in message_types
    )


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("conversations", "requests", "conversations.*.v1", "commands"),
    Subscription("conversations", "inbound", "practice.#", "inbound"),
    *_each("notifier", notifier.SendNotification),
    # one active consumer appends to the audit chains; other instances stand by
    Subscription("audit", "events", "#", "events", single_active_consumer=True),
    *_each("audit", audit.GetDeliveryLog, audit.GetAccessLog, audit.VerifyChain),
    *_each(
        "gateway",
        inbound.PracticeUpserted,
        inbound.ClientUpserted,
        inbound.InquiryReceived,
        inbound.StaffUpserted,
        conversations.MessagingEnablementChanged,
        conversations.UnreadReminderDue,
        conversations.ClientEmailDue,
        conversations.MessageRemoved,
    ),
)
