"""Queries the audit service answers over request/reply."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from sotto_contracts.base import AwareDatetime, Contract, Identifier, Query


class AuditRecordView(Contract):
    sequence: int
    event_id: str
    routing_key: str
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    actor_id: str | None = None
    subject_id: str | None = None
    conversation_id: str | None = None
    outcome: str | None = None
    attributes: dict[str, str | int | bool | None] = Field(default_factory=dict)
    hash: str
    previous_hash: str


class AuditPage(Contract):
    items: list[AuditRecordView]
    total: int
    page: int
    page_size: int


class GetDeliveryLog(Query):
    ROUTING_KEY: ClassVar[str] = "audit.get_delivery_log.v1"

    recipient_id: Identifier | None = None
    conversation_id: Identifier | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)


class GetAccessLog(Query):
    ROUTING_KEY: ClassVar[str] = "audit.get_access_log.v1"

    client_id: Identifier | None = None
    contact_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=100,
        description="With client_id: the client's contacts, whose link opens, verifications, "
        "sessions and views are listed with the client's own.",
    )
    staff_id: Identifier | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)


class VerifyChain(Query):
    ROUTING_KEY: ClassVar[str] = "audit.verify_chain.v1"


class ChainVerification(Contract):
    valid: bool
    records_checked: int
    first_broken_sequence: int | None = None
    problem: str | None = None
