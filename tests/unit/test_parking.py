"""What the parking middleware tells RabbitMQ when a handler fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from faststream._internal.context.repository import ContextRepo
from faststream.exceptions import RejectMessage
from pymongo.errors import ServerSelectionTimeoutError

from sotto_contracts.topology import Topology
from sotto_kit import parking
from sotto_kit.parking import ConsumerStats, NotYetKnownError, parking_middleware


class Outage:
    def __init__(self) -> None:
        self.waits = 0

    async def database_back(self) -> None:
        self.waits += 1


async def _nothing(*_: Any) -> None:
    return None


def _middleware(outage: Outage) -> Any:
    build = parking_middleware(
        "notifier",
        Topology(namespace="unit"),
        ConsumerStats(),
        _nothing,
        _nothing,
        outage.database_back,
    )
    message = SimpleNamespace(
        raw_message=SimpleNamespace(routing_key="notifier.send_notification.v1", headers={}),
        message_id="m1",
        body=b"{}",
    )
    return build(message, context=ContextRepo()), message


def _failing_with(error: BaseException) -> Callable[[Any], Awaitable[Any]]:
    async def handler(_: Any) -> Any:
        raise error

    return handler


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parking, "RETRY_PAUSE_SECONDS", 0.0)


@pytest.mark.parametrize(
    "error", [RuntimeError("bug"), NotYetKnownError("client c1")], ids=["failure", "not-known"]
)
async def test_a_failed_delivery_is_rejected_back_to_its_queue(error: Exception) -> None:
    """`basic.reject` with requeue counts a delivery on every RabbitMQ version, so the quorum
    queue's delivery limit parks a message that always fails. From RabbitMQ 4.3, `basic.nack`
    does not count one: such a message would be redelivered forever."""
    outage = Outage()
    middleware, message = _middleware(outage)
    with pytest.raises(RejectMessage) as rejected:
        await middleware.consume_scope(_failing_with(error), message)
    assert rejected.value.extra_options == {"requeue": True}
    assert outage.waits == 0


async def test_a_delivery_failed_by_a_database_outage_waits_for_the_database_first() -> None:
    outage = Outage()
    middleware, message = _middleware(outage)
    error = RuntimeError("batch not stored")
    error.__cause__ = ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")
    with pytest.raises(RejectMessage):
        await middleware.consume_scope(_failing_with(error), message)
    assert outage.waits == 1
