"""Every kind of event is recorded once, without content, in a chain that verifies."""

from __future__ import annotations

import re

from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.config import AuditSettings
from sotto_contracts.audit import ChainVerification, VerifyChain
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import Document
from tests.integration.audit.conftest import serve_audit
from tests.integration.audit.samples import LEAKED_ADDRESS, every_event
from tests.support.amqp import Amqp
from tests.support.waiting import eventually

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


async def test_every_kind_is_recorded_once_without_content(
    settings: AuditSettings, amqp: Amqp, records: AsyncCollection[Document], rpc: RpcClient
) -> None:
    events = every_event("practice-a")
    async with serve_audit(settings):
        for event in events:
            await amqp.publish(event)
        for event in events:  # redelivered: same message ids again
            await amqp.publish(event)
        await amqp.publish_raw(
            b"{}", exchange=amqp.topology.events.name, routing_key="gateway.made_up.v1"
        )
        await amqp.publish_raw(
            b'{"practice_id": "practice-a"}',
            exchange=amqp.topology.events.name,
            routing_key="gateway.link_opened.v1",
        )

        parked = await eventually(
            lambda: amqp.parked("audit"), until=lambda found: len(found) == 2, what="parked"
        )
        await eventually(
            lambda: records.count_documents({}), until=lambda n: n >= len(events), what="stored"
        )
        verification = await rpc.result(VerifyChain(practice_id="practice-a"), ChainVerification)

    stored = await records.find({}, {"_id": 0}).sort("sequence", 1).to_list()
    assert sorted(r["event_id"] for r in stored) == sorted(str(e.message_id) for e in events)
    assert [r["sequence"] for r in stored] == list(range(1, len(events) + 1))
    assert {r["routing_key"] for r in stored} == {e.ROUTING_KEY for e in events}
    text = repr(stored)
    assert not EMAIL.search(text), "an address reached the audit log"
    assert LEAKED_ADDRESS not in text
    assert "hopeless" not in text
    assert verification == ChainVerification(valid=True, records_checked=len(events))
    reasons = sorted(item.reason for item in parked)
    assert "unknown routing key" in reasons[1] or "unknown routing key" in reasons[0]
    assert any("invalid message" in reason for reason in reasons)
