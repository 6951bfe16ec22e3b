"""A newer sign-in link replaces every older one of its address, however concurrent requests
store them: exactly one link, the newest, stays usable."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from faststream.rabbit import RabbitBroker
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.base import utc_now
from sotto_gateway.adapters.store import LinkStore, OutboxWriter
from sotto_gateway.config import GatewaySettings
from sotto_gateway.domain import id_for_digest
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import PRACTICE

RECIPIENT = {"kind": "client", "id": "c1"}
RECIPIENT_KEY = "client:c1"


async def link_store(settings: GatewaySettings, database: AsyncDatabase[Document]) -> LinkStore:
    """Storing a sign-in link publishes nothing (its request flushes it later)."""
    publisher = Publisher(RabbitBroker(settings.rabbitmq_url), settings.topology)
    links = LinkStore(database, OutboxWriter(settings.topology, publisher))
    await links.ensure_indexes()
    return links


def sign_in_link(created_seconds_ago: int) -> Document:
    digest = secrets.token_hex(32)
    created_at = utc_now() - timedelta(seconds=created_seconds_ago)
    return {
        "_id": id_for_digest(digest),
        "practice_id": PRACTICE,
        "token_digest": digest,
        "recipient": RECIPIENT,
        "expires_at": created_at + timedelta(minutes=15),
        "created_at": created_at,
    }


async def usable(database: AsyncDatabase[Document]) -> list[str]:
    cursor = database["sign_in_links"].find({"used": False}, {"_id": 1})
    return [document["_id"] async for document in cursor]


async def test_an_older_link_stored_after_a_newer_one_does_not_replace_it(
    gateway_settings: GatewaySettings, database: AsyncDatabase[Document]
) -> None:
    links = await link_store(gateway_settings, database)
    newer, older = sign_in_link(1), sign_in_link(2)
    await links.add_sign_in_link(newer, RECIPIENT_KEY, [])
    await links.add_sign_in_link(older, RECIPIENT_KEY, [])

    assert await usable(database) == [newer["_id"]]
    claimed = await database["sign_in_link_uses"].find_one({"_id": older["_id"]})
    assert claimed is not None, "the replaced link's use is claimed too"


async def test_links_stored_at_once_leave_only_the_newest_usable(
    gateway_settings: GatewaySettings, database: AsyncDatabase[Document]
) -> None:
    links = await link_store(gateway_settings, database)
    documents = [sign_in_link(seconds) for seconds in (3, 1, 4, 2, 5)]
    await asyncio.gather(
        *(links.add_sign_in_link(document, RECIPIENT_KEY, []) for document in documents)
    )

    assert await usable(database) == [documents[1]["_id"]]
    assert await database["sign_in_link_uses"].count_documents({}) == 4
