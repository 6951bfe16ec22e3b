"""Every contract message by routing key, for consumers that take many kinds (audit, tools)."""

from __future__ import annotations

from sotto_contracts import audit, conversations, gateway, inbound, notifier
from sotto_contracts.base import Message


def _concrete_messages() -> dict[str, type[Message]]:
    found: dict[str, type[Message]] = {}
    for module in (inbound, conversations, gateway, notifier, audit):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Message)
                and "ROUTING_KEY" in vars(value)
            ):
                found[value.ROUTING_KEY] = value
    return dict(sorted(found.items()))


MESSAGES: dict[str, type[Message]] = _concrete_messages()


def message_type(routing_key: str) -> type[Message]:
    """The contract class for a routing key; KeyError if unknown."""
    return MESSAGES[routing_key]
