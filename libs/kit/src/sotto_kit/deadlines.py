"""A request whose caller stopped waiting is dropped, not answered.

The caller (`RpcClient`) stamps each request with the moment it gives up. A request still
queued past that moment (the answering service was down, or saturated) has already been
answered 503 on the caller's side; doing it anyway would spend the service's time on work
nobody reads while fresh requests wait behind it, and would carry out a command its sender
was told had failed. A redelivered request is always carried out: the consumer that had it
before may have done part of it, and only finishing it leaves nothing half done. Deadlines
compare wall clocks, so hosts keep them in sync (as tokens and links need anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage

from sotto_contracts.topology import REPLY_DEADLINE_HEADER
from sotto_kit.parking import ConsumerStats

logger = logging.getLogger(__name__)


def deadline_header(timeout_seconds: float) -> dict[str, int]:
    """The header for a request whose caller waits `timeout_seconds` from now."""
    return {REPLY_DEADLINE_HEADER: int((time.time() + timeout_seconds) * 1000)}


def is_expired(headers: dict[str, Any], now_ms: int) -> bool:
    deadline = headers.get(REPLY_DEADLINE_HEADER)
    return isinstance(deadline, int) and now_ms > deadline


def expired_requests_middleware(stats: ConsumerStats) -> Callable[..., BaseMiddleware]:
    """Build the broker middleware that acks expired first deliveries without running them."""

    class ExpiredRequestsMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            raw = msg.raw_message
            if (
                msg.reply_to
                and not getattr(raw, "redelivered", False)
                and is_expired(msg.headers, int(time.time() * 1000))
            ):
                routing_key = str(getattr(raw, "routing_key", "") or "")
                stats.count_expired(routing_key)
                logger.info(
                    "request expired before it was answered; dropped",
                    extra={"routing_key": routing_key, "message_id": msg.message_id},
                )
                return None
            return await call_next(msg)

    return ExpiredRequestsMiddleware
