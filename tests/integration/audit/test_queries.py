"""Delivery and access logs for the gateway: filters and paging over request/reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection

from sotto_audit.config import AuditSettings
from sotto_contracts.audit import AuditPage, GetAccessLog, GetDeliveryLog
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.gateway import (
    ClientViewedConversation,
    LinkIssued,
    LinkOpened,
    StaffViewedConversation,
)
from sotto_contracts.notifier import EmailDelivered, EmailFailed
from sotto_kit.messaging import RpcClient
from sotto_kit.mongo import Document
from tests.integration.audit.conftest import serve_audit
from tests.support.amqp import Amqp
from tests.support.waiting import eventually

PRACTICE = "practice-q"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _client(client_id: str) -> ParticipantRef:
    return ParticipantRef(kind=ParticipantKind.CLIENT, id=client_id)


def _delivered(day: int, client_id: str, conversation_id: str) -> EmailDelivered:
    return EmailDelivered(
        practice_id=PRACTICE,
        occurred_at=START + timedelta(days=day),
        notification_id=f"n-{day}",
        kind=NotificationKind.SECURE_MESSAGE_WAITING,
        recipient=_client(client_id),
        conversation_id=conversation_id,
        attempt=1,
    )


async def test_delivery_and_access_logs_filter_and_page(
    settings: AuditSettings, amqp: Amqp, records: AsyncCollection[Document], rpc: RpcClient
) -> None:
    deliveries = [_delivered(day, "c1", "conv-1") for day in range(5)]
    others = [
        _delivered(10, "c2", "conv-2"),
        EmailFailed(
            practice_id=PRACTICE,
            occurred_at=START + timedelta(days=11),
            notification_id="n-f",
            kind=NotificationKind.SIGN_IN_LINK,
            recipient=_client("c1"),
            attempt=3,
            smtp_code=550,
        ),
        LinkIssued(
            practice_id=PRACTICE,
            occurred_at=START + timedelta(days=12),
            link_id="l1",
            recipient=_client("c1"),
            conversation_id="conv-1",
            expires_at=START + timedelta(days=13),
            notification_id="n-9",
        ),
        LinkOpened(
            practice_id=PRACTICE, link_id="l1", recipient=_client("c1"), conversation_id="conv-1"
        ),
        StaffViewedConversation(
            practice_id=PRACTICE, staff_id="s1", conversation_id="conv-1", client_id="c1"
        ),
        StaffViewedConversation(
            practice_id=PRACTICE, staff_id="s2", conversation_id="conv-2", client_id="c2"
        ),
        StaffViewedConversation(
            practice_id="other-practice", staff_id="s1", conversation_id="x", client_id="c1"
        ),
        ClientViewedConversation(
            practice_id=PRACTICE,
            occurred_at=START + timedelta(days=14),
            principal=ParticipantRef(kind=ParticipantKind.CONTACT, id="k1"),
            conversation_id="conv-1",
        ),
        ClientViewedConversation(
            practice_id=PRACTICE,
            occurred_at=START + timedelta(days=15),
            principal=ParticipantRef(kind=ParticipantKind.CONTACT, id="k2"),
            conversation_id="conv-2",
        ),
    ]
    async with serve_audit(settings):
        for event in [*deliveries, *others]:
            await amqp.publish(event)
        await eventually(
            lambda: records.find({}, {"routing_key": 1, "practice_id": 1, "_id": 0}).to_list(),
            until=lambda found: len(found) == 14,
            what="stored",
        )

        async def delivery(**filters: object) -> AuditPage:
            return await rpc.result(GetDeliveryLog(practice_id=PRACTICE, **filters), AuditPage)  # type: ignore[arg-type]

        async def access(**filters: object) -> AuditPage:
            return await rpc.result(GetAccessLog(practice_id=PRACTICE, **filters), AuditPage)  # type: ignore[arg-type]

        to_c1 = await delivery(recipient_id="c1")
        first_page = await delivery(recipient_id="c1", page_size=3)
        second_page = await delivery(recipient_id="c1", page_size=3, page=2)
        far_beyond = await delivery(recipient_id="c1", page_size=500, page=2**62)
        conversation = await delivery(conversation_id="conv-2")
        window = await delivery(since=START + timedelta(days=1), until=START + timedelta(days=4))
        by_client = await access(client_id="c1")
        with_contacts = await access(client_id="c1", contact_ids=["k1"])
        by_staff = await access(staff_id="s1")

    assert to_c1.total == 7
    assert {item.routing_key for item in to_c1.items} == {
        EmailDelivered.ROUTING_KEY,
        EmailFailed.ROUTING_KEY,
        LinkIssued.ROUTING_KEY,
    }
    assert [i.event_id for i in first_page.items + second_page.items] == [
        i.event_id for i in to_c1.items[:6]
    ]
    assert (first_page.total, len(first_page.items), len(second_page.items)) == (7, 3, 3)
    assert (far_beyond.total, far_beyond.items) == (7, [])
    assert [i.subject_id for i in conversation.items] == ["c2"]
    assert sorted(i.occurred_at for i in window.items) == [
        START + timedelta(days=day) for day in (1, 2, 3)
    ]
    assert [i.routing_key for i in by_client.items] == [
        LinkOpened.ROUTING_KEY,
        StaffViewedConversation.ROUTING_KEY,
    ]
    assert [(i.actor_id, i.conversation_id) for i in by_staff.items] == [("s1", "conv-1")]
    assert [(i.routing_key, i.subject_id) for i in with_contacts.items] == [
        (LinkOpened.ROUTING_KEY, "c1"),
        (StaffViewedConversation.ROUTING_KEY, "c1"),
        (ClientViewedConversation.ROUTING_KEY, "k1"),
    ]
