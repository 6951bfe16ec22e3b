"""Secure links under concurrent requests: every verification attempt counts before its answer
takes effect, so guesses sent at once get no more tries than guesses sent one by one, and every
open and refusal is recorded however the requests interleave."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
from faststream.rabbit import RabbitBroker
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.conversations import PracticeSettings
from sotto_gateway.adapters.store import IdentityStore, LinkStore, OutboxWriter, SessionStore
from sotto_gateway.config import GatewaySettings
from sotto_gateway.domain import LinkStatus, SecureLink
from sotto_gateway.handlers import Portal
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY
from tests.integration.gateway.support import Broker, Watch
from tests.integration.gateway.test_links import issue_link

FAILED = "gateway.verification_failed.v1"
LOCKED = "gateway.link_locked.v1"
OPENED = "gateway.link_opened.v1"
REFUSED = "gateway.link_refused.v1"
SUCCEEDED = "gateway.verification_succeeded.v1"


def wrong(day: int) -> date:
    return date(2000, 1, day)


@dataclass
class Hold:
    read: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class HeldLinks(LinkStore):
    """The real link store, whose next reads can be held after they return, until released:
    the moment between a request's read of a link and what it does with it."""

    def __init__(self, database: AsyncDatabase[Document], writer: OutboxWriter) -> None:
        super().__init__(database, writer)
        self._holds: deque[Hold] = deque()

    def hold_next_read(self) -> Hold:
        hold = Hold()
        self._holds.append(hold)
        return hold

    async def link_by_digest(self, digest: str) -> SecureLink | None:
        link = await super().link_by_digest(digest)
        if self._holds:
            hold = self._holds.popleft()
            hold.read.set()
            await hold.release.wait()
        return link


class NoPracticeSettings:
    async def get(self, practice_id: str) -> PracticeSettings:
        raise AssertionError("links are verified without practice settings")


@dataclass
class Instance:
    """A second gateway's portal over the same database and broker, its link reads holdable."""

    portal: Portal
    links: HeldLinks


@pytest.fixture
async def instance(
    gateway_settings: GatewaySettings, database: AsyncDatabase[Document], world: dict[str, Any]
) -> AsyncIterator[Instance]:
    broker = RabbitBroker(gateway_settings.rabbitmq_url)
    await broker.connect()
    writer = OutboxWriter(gateway_settings.topology, Publisher(broker, gateway_settings.topology))
    links = HeldLinks(database, writer)
    portal = Portal(
        gateway_settings,
        IdentityStore(database),
        links,
        SessionStore(database, writer),
        NoPracticeSettings(),
    )
    yield Instance(portal, links)
    await broker.stop()


async def test_a_right_guess_read_before_the_lock_and_compared_after_it_starts_no_session(
    broker: Broker,
    instance: Instance,
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    token = await issue_link(broker, notifications)
    hold = instance.links.hold_next_read()
    right = asyncio.create_task(instance.portal.verify_link(token, CLIENT_BIRTHDAY))
    await hold.read.wait()
    outcomes = [await instance.portal.verify_link(token, wrong(day)) for day in range(1, 6)]
    assert [outcome.view.status for outcome in outcomes][-1] is LinkStatus.LOCKED
    hold.release.set()

    late = await right
    assert late.started is None
    assert late.view.status is LinkStatus.LOCKED
    assert await database["sessions"].count_documents({}) == 0
    stored = await database["links"].find_one({})
    assert stored is not None
    assert (stored["failed_attempts"], stored["locked"]) == (5, True)
    failures = await events.wait_for(FAILED, count=5)
    assert sorted(failure["failed_attempts"] for failure in failures) == [1, 2, 3, 4, 5]
    await events.wait_for(LOCKED)
    await events.wait_for(REFUSED, where=lambda refusal: refusal["reason"] == "locked")
    assert not events.of(SUCCEEDED)


async def test_many_guesses_at_once_get_the_tries_of_guesses_one_by_one(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    """Whatever the order the attempts are counted in: five wrong ones lock the link, and the
    right one starts a session only if fewer than five were counted before it (a success
    resets the count, as one by one)."""
    token = await issue_link(broker, notifications)
    guesses = [wrong(day) for day in range(1, 21)]
    guesses.insert(7, CLIENT_BIRTHDAY)
    answers = await asyncio.gather(
        *(
            http.post(
                f"/api/client/links/{token}/verify", json={"date_of_birth": guess.isoformat()}
            )
            for guess in guesses
        )
    )
    right = answers.pop(7)
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) <= {422, 410}, codes
    assert right.status_code in (200, 410)
    assert all(
        answer.json()["code"] == "link_locked" for answer in answers if answer.status_code == 410
    )

    # every 422 is one counted failure, and so is the failure that locked the link
    failures = await events.wait_for(FAILED, count=codes[422] + 1)
    counted = sorted(failure["failed_attempts"] for failure in failures)
    before_success = len(counted) - 5
    if right.status_code == 200:
        assert before_success in range(5), counted
        assert counted == sorted([*range(1, before_success + 1), 1, 2, 3, 4, 5])
    else:
        assert counted == [1, 2, 3, 4, 5]
    assert len(await events.wait_for(LOCKED)) == 1
    stored = await database["links"].find_one({})
    assert stored is not None
    assert (stored["failed_attempts"], stored["locked"]) == (5, True)
    sessions = await database["sessions"].count_documents({})
    assert sessions == (1 if right.status_code == 200 else 0)


async def test_an_open_is_recorded_when_a_failed_verification_is_counted_meanwhile(
    broker: Broker, instance: Instance, notifications: Watch, events: Watch
) -> None:
    token = await issue_link(broker, notifications)
    hold = instance.links.hold_next_read()
    opening = asyncio.create_task(instance.portal.open_link(token))
    await hold.read.wait()
    failed = await instance.portal.verify_link(token, wrong(1))
    assert failed.view.failed_attempts == 1
    hold.release.set()

    assert (await opening).status is LinkStatus.NEEDS_VERIFICATION
    [opened] = await events.wait_for(OPENED)
    assert opened["conversation_id"] == "conv1"


async def test_a_refusal_is_recorded_when_a_verification_is_counted_meanwhile(
    broker: Broker,
    instance: Instance,
    notifications: Watch,
    events: Watch,
    database: AsyncDatabase[Document],
) -> None:
    """A guess read before the link was revoked, and answered after someone else was refused
    the revoked link, counts nothing and is refused too."""
    token = await issue_link(broker, notifications)
    guess_read, refusal_read = instance.links.hold_next_read(), instance.links.hold_next_read()
    guessing = asyncio.create_task(instance.portal.verify_link(token, wrong(1)))
    await guess_read.read.wait()
    await database["links"].update_one({}, {"$set": {"revoked": True}})
    opening = asyncio.create_task(instance.portal.open_link(token))
    await refusal_read.read.wait()
    guess_read.release.set()
    assert (await guessing).view.status is LinkStatus.REVOKED
    refusal_read.release.set()

    assert (await opening).status is LinkStatus.REVOKED
    refusals = await events.wait_for(REFUSED, count=2)
    assert [refusal["reason"] for refusal in refusals] == ["revoked", "revoked"]
    assert not events.of(FAILED)
