"""The identity projection follows the practice system's client events."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.inbound import ClientUpserted
from sotto_kit.mongo import Document
from tests.integration.gateway.conftest import PRACTICE
from tests.integration.gateway.support import Broker
from tests.support.waiting import eventually


async def test_a_contact_dropped_from_the_client_loses_portal_access(
    broker: Broker, database: AsyncDatabase[Document], world: dict[str, Any]
) -> None:
    alex: ClientUpserted = world["clients"][0]
    partner = f"{PRACTICE}|contact|k1"
    people = database["people"]
    before = await people.find_one({"_id": partner})
    assert before is not None
    assert before["active"] is True

    await broker.publish(
        ClientUpserted(**alex.model_dump(exclude={"message_id", "occurred_at", "contacts"}))
    )

    async def partner_active() -> bool:
        document = await people.find_one({"_id": partner})
        assert document is not None
        return bool(document["active"])

    await eventually(partner_active, until=lambda active: not active, what="partner deactivated")
    alex_now = await people.find_one({"_id": f"{PRACTICE}|client|c1"})
    assert alex_now is not None
    assert alex_now["active"] is True
    assert alex_now["contact_ids"] == []
