"""Helpers for gateway tests: watch exchanges, publish events, staff tokens, client sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from sotto_contracts.base import Message
from sotto_contracts.topology import Topology
from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings
from tests.support.waiting import eventually


@dataclass
class Captured:
    routing_key: str
    body: dict[str, Any]


@dataclass
class Watch:
    """Every message published to an exchange under some routing keys, in arrival order."""

    messages: list[Captured] = field(default_factory=list)

    def of(self, routing_key: str) -> list[dict[str, Any]]:
        """Distinct messages: publishing is at least once, consumers dedupe on message_id."""
        distinct: dict[str, dict[str, Any]] = {}
        for item in self.messages:
            if item.routing_key == routing_key:
                distinct.setdefault(str(item.body.get("message_id")), item.body)
        return list(distinct.values())

    async def wait_for(
        self, routing_key: str, count: int = 1, where: Callable[[dict[str, Any]], bool] = bool
    ) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]]:
            return [body for body in self.of(routing_key) if where(body)]

        return await eventually(
            found, until=lambda items: len(items) >= count, what=f"{count} x {routing_key}"
        )


class Broker:
    """Raw RabbitMQ access for one test: watch exchanges and publish practice events."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self.topology = topology
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def _channel(self) -> aio_pika.abc.AbstractChannel:
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self._url)
        return await self._connection.channel()

    async def watch(self, exchange: str, *routing_keys: str) -> Watch:
        watch = Watch()
        channel = await self._channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        target = await channel.get_exchange(exchange, ensure=False)
        for key in routing_keys or ("#",):
            await queue.bind(target, routing_key=key)

        async def collect(message: AbstractIncomingMessage) -> None:
            async with message.process():
                watch.messages.append(Captured(message.routing_key or "", json.loads(message.body)))

        await queue.consume(collect)
        return watch

    async def publish(self, message: Message) -> None:
        channel = await self._channel()
        try:
            exchange = await channel.get_exchange(
                self.topology.exchange_of(type(message)).name, ensure=False
            )
            await exchange.publish(
                aio_pika.Message(
                    message.model_dump_json().encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(message.message_id),
                ),
                routing_key=message.ROUTING_KEY,
            )
        finally:
            await channel.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


SESSION_COOKIE = "sotto_session"
CSRF_COOKIE = "sotto_csrf"


def adopt_session(client: Any, response: Any) -> str:
    """Keep the session cookie the gateway set (Secure, so httpx would not send it over http)."""
    client.cookies.set(SESSION_COOKIE, response.cookies[SESSION_COOKIE])
    csrf: str = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = csrf
    return csrf


def set_cookie_headers(response: Any) -> list[str]:
    return [value for name, value in response.headers.multi_items() if name == "set-cookie"]


SEND = "notifier.send_notification.v1"


def staff_headers(settings: GatewaySettings, staff_id: str, practice_id: str) -> dict[str, str]:
    token = mint_staff_token(
        settings, practice_id=practice_id, staff_id=staff_id, lifetime=timedelta(minutes=30)
    )
    return {"Authorization": f"Bearer {token}"}


async def sign_in(
    http: httpx.AsyncClient, notifications: Watch, email: str, slug: str = "calm-waters"
) -> str:
    """Sign a client or contact in through the portal page and the emailed link; the CSRF token."""
    requested = await http.post(f"/api/portal/{slug}/sign-in", json={"email": email})
    assert requested.status_code == 202, requested.text
    commands = await notifications.wait_for(SEND, where=lambda body: body["to_address"] == email)
    token = commands[-1]["link_url"].rsplit("/sign-in/", 1)[1]
    started = await http.post(f"/api/portal/sign-in/{token}")
    assert started.status_code == 200, started.text
    return adopt_session(http, started)
