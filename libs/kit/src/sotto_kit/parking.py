"""Poison messages go to the service's parking queue with their reason; the consumer goes on.

A message that can never succeed (undecodable, fails its contract, or refused by a handler
with `PoisonMessageError`) is parked at once and acked. One naming something not known yet
(`NotYetKnownError`: its event may still be on its way) is retried a few times, then parked
with its reason. Any other error returns the message to its queue with `basic.reject`, which
counts a delivery on every RabbitMQ version (from 4.3, `basic.nack` does not), until the quorum
queue's delivery limit dead-letters it to the same parking queue. While the database is
unreachable, the message is held until it answers again (up to `DATABASE_WAIT_SECONDS`), so an
outage spends one delivery per wait, not one every few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from fast_depends.exceptions import ValidationError as DependencyValidationError
from faststream import BaseMiddleware
from faststream._internal.context.repository import ContextRepo
from faststream.exceptions import RejectMessage
from faststream.message import StreamMessage
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from sotto_contracts.base import Problem, Reply
from sotto_contracts.topology import (
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKING_REASON_HEADER,
    Topology,
)
from sotto_kit.observability import Metrics

logger = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
MAX_REASON_LENGTH = 2000
NOT_YET_KNOWN_DELIVERIES = 5
DATABASE_WAIT_SECONDS = 60.0


class PoisonMessageError(Exception):
    """Raised by a handler for a message that no retry can make succeed."""


class NotYetKnownError(Exception):
    """Raised by a handler for a message naming a practice, client or person not projected
    yet: events of different queues (or one queue's concurrent consumers) arrive in any order."""


def delivery_count(raw: Any) -> int:
    """Earlier deliveries of this message (quorum queues count them in a header)."""
    headers = getattr(raw, "headers", None) or {}
    count = headers.get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0


def caused_by_database_outage(error: BaseException) -> bool:
    """The database was unreachable, for this error or for one it was raised from."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionFailure):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


POISON_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    DependencyValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    PoisonMessageError,
)


class ConsumerStats:
    """Counts per routing key, shown on the health endpoint and in metrics."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.consumed: Counter[str] = Counter()
        self.parked: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()
        self._metrics = metrics

    def count_consumed(self, routing_key: str) -> None:
        self.consumed[routing_key] += 1

    def count_parked(self, routing_key: str) -> None:
        self.parked[routing_key] += 1
        if self._metrics is not None:
            self._metrics.count_parked(routing_key)

    def count_retried(self, routing_key: str) -> None:
        self.retried[routing_key] += 1
        if self._metrics is not None:
            self._metrics.count_retried(routing_key)

    def count_expired(self, routing_key: str) -> None:
        self.expired[routing_key] += 1
        if self._metrics is not None:
            self._metrics.count_expired(routing_key)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "consumed": dict(self.consumed),
            "parked": dict(self.parked),
            "retried": dict(self.retried),
            "expired": dict(self.expired),
        }


Park = Callable[[bytes, dict[str, Any]], Awaitable[None]]
SendReply = Callable[[str, str, bytes], Awaitable[None]]


def describe(error: BaseException) -> str:
    """A reason for ops; validation errors name fields, never echo their values."""
    if isinstance(error, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
        text = f"invalid message: {fields}"
    elif isinstance(error, DependencyValidationError):
        text = "invalid message: " + "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
            for item in getattr(error, "errors", list)()
        )
    else:
        text = f"{type(error).__name__}: {error}"
    return text[:MAX_REASON_LENGTH]


def parking_middleware(
    service: str,
    topology: Topology,
    stats: ConsumerStats,
    park: Park,
    send_reply: SendReply,
    database_back: Callable[[], Awaitable[None]],
) -> Callable[..., BaseMiddleware]:
    """Build the broker middleware class for one service. `database_back` returns once the
    database answers again, or after at most `DATABASE_WAIT_SECONDS`."""

    class ParkingMiddleware(BaseMiddleware):
        def __init__(self, msg: Any, /, *, context: ContextRepo) -> None:
            super().__init__(msg, context=context)

        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            raw = msg.raw_message
            routing_key = str(getattr(raw, "routing_key", "") or "")
            try:
                result = await call_next(msg)
            except NotYetKnownError as error:
                deliveries = delivery_count(raw) + 1
                if deliveries >= NOT_YET_KNOWN_DELIVERIES:
                    return await self._park(msg, f"{error} (after {deliveries} deliveries)")
                stats.count_retried(routing_key)
                logger.info(
                    "not known yet; message will be redelivered",
                    extra={"routing_key": routing_key, "message_id": msg.message_id},
                )
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                raise RejectMessage(requeue=True) from error
            except POISON_ERRORS as error:
                return await self._park(msg, describe(error))
            except Exception as error:
                stats.count_retried(routing_key)
                logger.exception(
                    "handler failed; message will be redelivered",
                    extra={"routing_key": routing_key, "message_id": msg.message_id},
                )
                if caused_by_database_outage(error):
                    await database_back()
                else:
                    await asyncio.sleep(RETRY_PAUSE_SECONDS)
                raise RejectMessage(requeue=True) from error
            stats.count_consumed(routing_key)
            return result

        async def _park(self, msg: StreamMessage[Any], reason: str) -> None:
            raw = msg.raw_message
            routing_key = str(getattr(raw, "routing_key", "") or "")
            logger.warning(
                "parking message", extra={"routing_key": routing_key, "message_id": msg.message_id}
            )
            await park(
                msg.body,
                {
                    PARKING_REASON_HEADER: reason[:MAX_REASON_LENGTH],
                    ORIGINAL_EXCHANGE_HEADER: str(getattr(raw, "exchange", "") or ""),
                    ORIGINAL_ROUTING_KEY_HEADER: routing_key,
                },
            )
            stats.count_parked(routing_key)
            if msg.reply_to:
                problem = Problem(code="invalid_message", detail=reason, status=422)
                await send_reply(
                    msg.reply_to,
                    msg.correlation_id,
                    Reply(ok=False, problem=problem).model_dump_json().encode(),
                )

    return ParkingMiddleware
