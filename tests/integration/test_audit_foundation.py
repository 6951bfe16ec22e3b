"""Foundation round trip for audit: a contract event goes in, the database and health show it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from sotto_audit.config import AuditSettings
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.gateway import SessionEnded
from sotto_kit.mongo import Document
from tests.integration.audit.conftest import serve_audit
from tests.support.amqp import Amqp
from tests.support.waiting import eventually


async def test_event_is_recorded_and_poison_is_parked(
    make_settings: Callable[..., Any], amqp: Amqp, mongo: AsyncMongoClient[Document]
) -> None:
    settings: AuditSettings = make_settings(AuditSettings, "audit")
    event = SessionEnded(
        practice_id="p1",
        session_ref="s1",
        principal=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        reason="sign_out",
    )
    async with (
        serve_audit(settings) as (base_url,),
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        await amqp.publish_raw(
            b"{not json", exchange=amqp.topology.events.name, routing_key=event.ROUTING_KEY
        )
        await amqp.publish(event)

        async def consumed() -> int:
            report = (await http.get("/health")).json()
            return int(report["messages"]["consumed"].get(event.ROUTING_KEY, 0))

        await eventually(consumed, until=lambda n: n == 1, what="event consumed")
        records = mongo[settings.database]["records"]
        assert await records.count_documents({"event_id": str(event.message_id)}) == 1

        parked = await eventually(lambda: amqp.parked("audit"), what="parked message")
        assert len(parked) == 1
        assert parked[0].body == b"{not json"
        assert "invalid" in parked[0].reason or "JSON" in parked[0].reason
