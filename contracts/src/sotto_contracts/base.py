"""Envelope shared by every Sotto message: identity, time, practice and routing key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _require_aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


AwareDatetime = Annotated[datetime, AfterValidator(_require_aware_utc)]

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
"""An opaque id chosen by the system that owns the entity (practice, client, staff...)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Any payload that crosses a service boundary: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Contract):
    """A routed message. Subclasses set ROUTING_KEY as `<owner>.<name>.v<N>`."""

    ROUTING_KEY: ClassVar[str]
    KIND: ClassVar[Literal["event", "command", "inbound", "query"]]

    message_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this message; consumers are idempotent on it.",
    )
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now, description="When it happened, timezone-aware (UTC)."
    )
    practice_id: Identifier = Field(
        description="The practice this message belongs to.", examples=["practice-1"]
    )


class Event(Message):
    """Something that happened, published on the events exchange, named in the past tense."""

    KIND: ClassVar[Literal["event"]] = "event"


class Command(Message):
    """A request for one service to do something, published on the commands exchange."""

    KIND: ClassVar[Literal["command"]] = "command"


class InboundEvent(Message):
    """An event from another practice system (scheduling, billing, intake)."""

    KIND: ClassVar[Literal["inbound"]] = "inbound"


class Query(Message):
    """A request/reply call over RabbitMQ; the reply is a `Reply`."""

    KIND: ClassVar[Literal["query"]] = "query"


class Problem(Contract):
    """A typed refusal a caller can map to an HTTP answer (403, 404, 409, 413, 422, 429)."""

    code: str = Field(description="Stable machine-readable reason.", examples=["not_found"])
    detail: str = Field(description="Human-readable explanation without any message content.")
    status: int = Field(
        default=409, ge=400, le=599, description="Suggested HTTP status for the gateway."
    )


class Reply(Contract):
    """Every request/reply answer: either `result` or `problem`, never both."""

    ok: bool
    result: dict[str, object] | list[object] | None = None
    problem: Problem | None = None
