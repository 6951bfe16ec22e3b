"""What request handlers reach through dependency injection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from limits.aio.strategies import RateLimiter
from litestar.connection import ASGIConnection
from litestar.datastructures import State

from sotto_gateway.adapters.rpc import Services
from sotto_gateway.adapters.tokens import StaffTokenVerifier
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
