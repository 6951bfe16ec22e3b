"""What request handlers reach through dependency injection."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem
from limits.aio.strategies import RateLimiter
from litestar.connection import ASGIConnection
from litestar.datastructures import State

from sotto_gateway.adapters.rpc import Services
from sotto_gateway.adapters.tokens import StaffTokenVerifier
from sotto_gateway.api.problems import ApiProblemError
from sotto_gateway.config import GatewaySettings
from sotto_gateway.handlers import Portal
from sotto_kit.messaging import Publisher


@dataclass(frozen=True)
class Gateway:
    settings: GatewaySettings
    portal: Portal
    services: Services
    verifier: StaffTokenVerifier
    publisher: Publisher
    limiter: RateLimiter


def gateway_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway:
    return cast(Gateway, connection.app.state.gateway)


async def provide_gateway(state: State) -> Gateway:
    return cast(Gateway, state.gateway)


async def admit(gateway: Gateway, limit: RateLimitItem, scope: str, key: str, detail: str) -> None:
    """Count one request against `limit`; over it, 429 with when to try again."""
    if await gateway.limiter.hit(limit, scope, key):
        return
    stats = await gateway.limiter.get_window_stats(limit, scope, key)
    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
    raise ApiProblemError(429, "rate_limited", detail, headers={"Retry-After": str(retry_after)})
