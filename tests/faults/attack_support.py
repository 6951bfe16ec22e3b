"""A seeded system shared by the attack tests, signed-in clients and timing samples."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from sotto_cli.demo import demo_practice
from tests.e2e.conftest import Practice
from tests.e2e.portal import ClientSession
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

SIGN_IN_PATH = re.compile(r"/api/portal/sign-in/[A-Za-z0-9_\-]{20,}")


async def seed_demo(system: RunningSystem, amqp: Amqp, practice_id: str) -> Practice:
    """The demo practice under `practice_id`, with notices sent at once."""
    domain = f"{practice_id}.example.org"
    for event in demo_practice(practice_id, domain):
        await amqp.publish(event)
    practice = Practice(practice_id, domain, system)
    async with practice.staff("staff-owner") as owner:

        async def settings_saved() -> int:
            answer = await owner.patch(
                "/api/staff/settings",
                json={
                    "client_notification_delay_seconds": 0,
                    "staff_notification_delay_seconds": 0,
                },
            )
            return answer.status_code

        await eventually(settings_saved, until=lambda status: status == 200, what="settings")
    return practice


async def sign_in_link(practice: Practice, mail: MailCatcher, email: str) -> str:
    """Ask for an instant sign-in link and return its path from the newest email."""
    seen = {caught.id for caught in await mail.to_address(email)}
    async with httpx.AsyncClient(base_url=practice.system.gateway_url, timeout=30) as http:
        asked = await http.post(
            f"/api/portal/{practice.practice_id}/sign-in", json={"email": email}
        )
    assert asked.status_code == 202
    emails = await eventually(
        lambda: mail.to_address(email),
        until=lambda found: any(caught.id not in seen for caught in found),
        what=email,
    )
    [newest] = [caught for caught in emails if caught.id not in seen]
    found = SIGN_IN_PATH.search(newest.text) or SIGN_IN_PATH.search(newest.html)
    assert found, "no sign-in link in the email"
    return found.group(0)


async def signed_in(practice: Practice, mail: MailCatcher, email: str) -> ClientSession:
    client = ClientSession(practice.system.gateway_url)
    answer = await client.request("POST", await sign_in_link(practice, mail, email))
    assert answer.status_code == 200, answer.text
    client.csrf_token = answer.json()["csrf_token"]
    return client


async def median_ratio(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]], tries: int
) -> float:
    """Median time of `first` over median time of `second`, sampled alternately."""
    firsts: list[float] = []
    seconds: list[float] = []
    for _ in range(tries):
        for call, samples in ((first, firsts), (second, seconds)):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)
    return statistics.median(firsts) / statistics.median(seconds)
