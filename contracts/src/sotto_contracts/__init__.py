"""Sotto's shared message contracts. See README.md for publishing from a practice system."""

from sotto_contracts.base import (
    Command,
    Contract,
    Event,
    InboundEvent,
    Message,
    Problem,
    Query,
    Reply,
)
from sotto_contracts.registry import MESSAGES, message_type
from sotto_contracts.topology import DEFAULT_NAMESPACE, Topology

__all__ = [
    "DEFAULT_NAMESPACE",
    "MESSAGES",
    "Command",
    "Contract",
    "Event",
    "InboundEvent",
    "Message",
    "Problem",
    "Query",
    "Reply",
    "Topology",
    "message_type",
]
