"""Instant sign-in cannot flood an inbox or keep a client's link invalid: at most 3 emails per
address per 15 minutes (on every instance together) and 10 requests per client address per
minute, answered alike whether or not the address is known."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.common import NotificationKind
from sotto_gateway.adapters.sign_in_sends import SignInSends
from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app
from sotto_kit.mongo import Document
from tests.integration.gateway.support import SEND, Watch
from tests.support.serving import serve

SIGN_IN = "/api/portal/calm-waters/sign-in"


def is_sign_in(body: dict[str, Any]) -> bool:
    return bool(body["kind"] == NotificationKind.SIGN_IN_LINK)


async def test_an_address_gets_three_sign_in_emails_and_its_last_link_stays_valid(
    gateway_settings: GatewaySettings,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    database: AsyncDatabase[Document],
) -> None:
    # a gateway of this test's own: once it has stopped, what followed each answer is done
    async with (
        serve(create_app(gateway_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=15) as client,
    ):
        answers = [await client.post(SIGN_IN, json={"email": "alex@example.org"}) for _ in "1234"]
        unknown = [await client.post(SIGN_IN, json={"email": "nobody@example.org"}) for _ in "1234"]

    assert {answer.status_code for answer in [*answers, *unknown]} == {202}
    assert len({answer.content for answer in [*answers, *unknown]}) == 1
    # nothing sent and nothing stored for the fourth request of either address
    assert await database["sign_in_links"].count_documents({"recipient": {"$ne": None}}) == 3
    assert await database["sign_in_links"].count_documents({"recipient": None}) == 3
    # each newer link replaced the one before, for the unknown address as for the known one
    for recipient in ({"$ne": None}, None):
        replaced = {"recipient": recipient, "replaced": True}
        assert await database["sign_in_links"].count_documents(replaced) == 2
    commands = await notifications.wait_for(SEND, count=3, where=is_sign_in)
    assert len(commands) == 3
    tokens = [command["link_url"].rsplit("/sign-in/", 1)[1] for command in commands]
    used = [(await http.post(f"/api/portal/sign-in/{token}")).status_code for token in tokens]
    assert sorted(used) == [200, 404, 404], "the newest emailed link still signs in"


async def test_the_address_limit_holds_across_gateway_instances(
    gateway_settings: GatewaySettings,
    world: dict[str, Any],
    database: AsyncDatabase[Document],
) -> None:
    async with (
        serve(create_app(gateway_settings)) as first_url,
        serve(create_app(gateway_settings)) as second_url,
        httpx.AsyncClient(base_url=first_url, timeout=15) as first,
        httpx.AsyncClient(base_url=second_url, timeout=15) as second,
    ):
        answers = await asyncio.gather(
            *(
                client.post(SIGN_IN, json={"email": "sam@example.org"})
                for client in [first, second] * 4
            )
        )
    # both gateways have stopped: what followed each answer is done
    assert {answer.status_code for answer in answers} == {202}
    assert await database["sign_in_links"].count_documents({}) == 3


async def test_a_burst_late_in_one_period_still_counts_early_in_the_next(
    database: AsyncDatabase[Document],
) -> None:
    now = datetime(2030, 1, 1, 10, 14, tzinfo=UTC)
    sends = SignInSends(database, b"key", 3, timedelta(minutes=15), clock=lambda: now)
    await sends.ensure_indexes()
    assert [await sends.claim("alex@example.org") for _ in range(2)] == [True, True]
    now += timedelta(minutes=2)  # the next window
    assert [await sends.claim(" Alex@Example.org") for _ in range(2)] == [True, False]
    assert await sends.claim("sam@example.org")
    now += timedelta(minutes=14)  # the burst's window is the previous one no more
    assert [await sends.claim("alex@example.org") for _ in range(3)] == [True, True, False]
    assert await database["sign_in_sends"].count_documents({}) == 4, "the burst's window went"


async def test_a_client_address_is_refused_after_ten_requests_a_minute(
    base_url: str, http: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    for index in range(10):
        answer = await http.post(SIGN_IN, json={"email": f"someone-{index}@example.org"})
        assert answer.status_code == 202
    refused = await http.post(SIGN_IN, json={"email": "alex@example.org"})

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=base_url, transport=other_address) as elsewhere:
        assert (
            await elsewhere.post(SIGN_IN, json={"email": "alex@example.org"})
        ).status_code == 202
