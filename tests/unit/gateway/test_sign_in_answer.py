"""A sign-in request is answered before its address is looked up, so how long the answer takes
does not tell whether the address belongs to someone; what follows the answer is still done,
and its failures are logged."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from litestar import Litestar
from litestar.datastructures import State
from litestar.types import HTTPRequestEvent, Message, Scope
from pymongo.errors import ServerSelectionTimeoutError

from sotto_gateway.adapters.rpc import Services
from sotto_gateway.adapters.sign_in_sends import SignInSends
from sotto_gateway.adapters.tokens import StaffTokenVerifier
from sotto_gateway.api.portal import SignInController
from sotto_gateway.api.problems import EXCEPTION_HANDLERS
from sotto_gateway.api.state import Gateway
from sotto_gateway.config import GatewaySettings
from sotto_gateway.domain import Practice
from sotto_gateway.handlers import NotFoundError, Portal
from sotto_kit.messaging import Publisher

PRACTICE = Practice(practice_id="p1", slug="calm-waters", display_name="Calm Waters")


@dataclass
class SlowPortal:
    """Looks addresses up only when released; records what it was asked to do."""

    fail_with: Exception | None = None
    looking_up: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requested: list[tuple[Practice, str]] = field(default_factory=list)
    flushed: list[str] = field(default_factory=list)

    async def sign_in_practice(self, slug: str) -> Practice:
        if slug != PRACTICE.slug:
            raise NotFoundError("practice")
        return PRACTICE

    async def request_sign_in(self, practice: Practice, email: str) -> str:
        self.looking_up.set()
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.requested.append((practice, email))
        return "record-1"

    async def flush_sign_in(self, link_id: str) -> None:
        self.flushed.append(link_id)


class Sends(SignInSends):
    """Counts claims in memory (the endpoint's dependency is type-checked: a subclass)."""

    def __init__(self, limit: int = 3) -> None:
        self.claimed: list[str] = []
        self.limit = limit

    async def claim(self, email: str) -> bool:
        self.claimed.append(email)
        return len(self.claimed) <= self.limit


def app_of(portal: SlowPortal, sends: Sends, settings: GatewaySettings) -> Litestar:
    gateway = Gateway(
        settings=settings,
        portal=cast(Portal, portal),
        services=cast(Services, None),
        verifier=cast(StaffTokenVerifier, None),
        publisher=cast(Publisher, None),
        limiter=MovingWindowRateLimiter(MemoryStorage()),
    )
    return Litestar(
        [SignInController],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,
        state=State({"gateway": gateway, "sign_in_sends": sends}),
    )


@dataclass
class Exchange:
    """One request to the app over ASGI: the answer is seen as soon as it is sent, before the
    app's call (which runs background tasks after the answer) returns."""

    call: asyncio.Task[None]
    answered: asyncio.Event
    sent: list[Message]

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))


def post(app: Litestar, path: str, data: dict[str, Any]) -> Exchange:
    body = json.dumps(data).encode()
    scope: Scope = cast(
        Scope,
        {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"gateway"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("gateway", 80),
            "state": {},
        },
    )
    answered = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> HTTPRequestEvent:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    return Exchange(asyncio.create_task(app(scope, receive, send)), answered, sent)


SIGN_IN = "/api/portal/calm-waters/sign-in"


async def test_the_answer_is_sent_before_the_address_is_looked_up() -> None:
    portal, sends = SlowPortal(), Sends()
    exchange = post(app_of(portal, sends, GatewaySettings()), SIGN_IN, {"email": "a@example.org"})

    await portal.looking_up.wait()
    try:
        assert exchange.answered.is_set(), "the answer waited for the lookup"
        assert exchange.status == 202
        assert not exchange.call.done()
    finally:
        portal.release.set()
        await exchange.call
    assert portal.requested == [(PRACTICE, "a@example.org")]
    assert portal.flushed == ["record-1"]


async def test_an_address_over_its_email_limit_is_answered_alike_and_sent_nothing() -> None:
    portal, sends = SlowPortal(), Sends(limit=0)
    portal.release.set()
    exchange = post(app_of(portal, sends, GatewaySettings()), SIGN_IN, {"email": "a@example.org"})
    await exchange.call
    assert exchange.status == 202
    assert sends.claimed == ["a@example.org"]
    assert portal.requested == []
    assert portal.flushed == []


async def test_a_failure_after_the_answer_is_logged_without_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal, sends = SlowPortal(fail_with=ServerSelectionTimeoutError("no server")), Sends()
    portal.release.set()
    exchange = post(app_of(portal, sends, GatewaySettings()), SIGN_IN, {"email": "a@example.org"})
    with caplog.at_level(logging.WARNING):
        await exchange.call
    assert exchange.status == 202
    [record] = [r for r in caplog.records if r.name == "sotto_gateway.api.portal"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ServerSelectionTimeoutError)
    assert "a@example.org" not in caplog.text
    assert portal.flushed == []


async def test_an_unknown_practice_is_still_not_found() -> None:
    portal, sends = SlowPortal(), Sends()
    exchange = post(
        app_of(portal, sends, GatewaySettings()),
        "/api/portal/nowhere/sign-in",
        {"email": "a@example.org"},
    )
    await exchange.call
    assert exchange.status == 404
    assert sends.claimed == []


async def test_requests_over_the_per_ip_limit_are_refused_before_anything_is_done() -> None:
    portal, sends = SlowPortal(), Sends()
    portal.release.set()
    app = app_of(portal, sends, GatewaySettings(sign_in_requests_per_ip=2))
    statuses = []
    for _ in range(3):
        exchange = post(app, SIGN_IN, {"email": "a@example.org"})
        await exchange.call
        statuses.append(exchange.status)
    assert statuses == [202, 202, 429]
    assert len(sends.claimed) == 2
