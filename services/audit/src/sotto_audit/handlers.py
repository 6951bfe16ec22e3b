from __future__ import annotations

from sotto_contracts.base import Message

from sotto_audit.adapters.store import AuditStore
from sotto_audit.domain import AuditEntry


async def record_event(event: Message, store: AuditStore) -> bool:
    return await store.append(
        AuditEntry(
            event_id=str(event.message_id),
            routing_key=event.ROUTING_KEY,
            practice_id=event.practice_id,
            occurred_at=event.occurred_at,
        )
    )
