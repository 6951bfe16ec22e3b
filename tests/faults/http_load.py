"""Steady HTTP load on the gateway: staff messages (checked afterwards) and sign-in requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tests.e2e.conftest import Practice
from tests.e2e.test_secure_messaging import open_conversation
from tests.support.waiting import eventually


@dataclass
class LoadLog:
    accepted_bodies: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    unavailable_without_retry_after: int = 0
    transport_errors: int = 0

    async def accepted(self) -> int:
        return len(self.accepted_bodies)


async def staff_and_sign_in_load(
    practice: Practice, conversation_id: str, log: LoadLog, stop: asyncio.Event
) -> None:
    route = f"/api/portal/{practice.practice_id}/sign-in"
    async with (
        practice.staff("staff-clinician") as clinician,
        httpx.AsyncClient(base_url=practice.system.gateway_url, timeout=30) as anonymous,
    ):
        while not stop.is_set():
            body = f"load message {uuid.uuid4().hex}"
            for call in (
                clinician.post(
                    f"/api/staff/conversations/{conversation_id}/messages", json={"body": body}
                ),
                anonymous.post(route, json={"email": f"nobody-{uuid.uuid4().hex}@example.org"}),
            ):
                try:
                    answer = await call
                except httpx.TransportError:
                    log.transport_errors += 1
                    continue
                log.statuses.append(answer.status_code)
                if answer.status_code == 503 and "retry-after" not in answer.headers:
                    log.unavailable_without_retry_after += 1
                if answer.status_code == 201:
                    log.accepted_bodies.append(body)
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class LoadOutcome:
    log: LoadLog
    lost: list[str]
    server_errors: list[int]

    @property
    def counts(self) -> dict[str, float]:
        return {
            "requests": len(self.log.statuses),
            "accepted": len(self.log.accepted_bodies),
            "503": self.log.statuses.count(503),
            "other 5xx": len(self.server_errors),
            "503 without Retry-After": self.log.unavailable_without_retry_after,
            "accepted lost": len(self.lost),
        }

    @property
    def clean(self) -> bool:
        return (
            not self.lost
            and not self.server_errors
            and not self.log.unavailable_without_retry_after
        )


async def all_healthy(practice: Practice, timeout: float) -> None:
    async with httpx.AsyncClient(timeout=5) as http:

        async def health() -> dict[str, int]:
            statuses: dict[str, int] = {}
            for name, service in practice.system.services.items():
                try:
                    statuses[name] = (await http.get(f"{service.url}/health")).status_code
                except httpx.TransportError:
                    statuses[name] = 0
            return statuses

        await eventually(
            health, until=lambda found: set(found.values()) == {200}, timeout=timeout, what="health"
        )


async def fault_under_load(
    practice: Practice,
    inject: Callable[[], Awaitable[None]],
    *,
    recovery_timeout: float,
    accepted_around_fault: int = 3,
) -> LoadOutcome:
    """Keep the gateway busy, inject the fault, wait for writes and health to come back,
    then check that every accepted message is in its thread."""
    async with practice.staff("staff-clinician") as clinician:
        conversation_id = await open_conversation(clinician, "client-alex", "load thread")
    log = LoadLog()
    stop = asyncio.Event()
    load = asyncio.create_task(staff_and_sign_in_load(practice, conversation_id, log, stop))
    try:
        await eventually(log.accepted, until=lambda n: n >= accepted_around_fault, what="load")
        accepted_before = len(log.accepted_bodies)
        await inject()
        await all_healthy(practice, recovery_timeout)
        await eventually(
            log.accepted,
            until=lambda n: n >= accepted_before + accepted_around_fault,
            timeout=120,
            what="writes accepted again after the fault",
        )
    finally:
        stop.set()
        await load
    async with practice.staff("staff-owner") as owner:
        thread = await eventually(
            lambda: owner.get(f"/api/staff/conversations/{conversation_id}"),
            until=lambda answer: answer.status_code == 200,
            what="thread readable",
        )
    return LoadOutcome(
        log,
        lost=[body for body in log.accepted_bodies if body not in thread.text],
        server_errors=[status for status in log.statuses if status >= 500 and status != 503],
    )
