"""Browser fixtures: Debian's Chromium driven by Playwright against the whole running system."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from sotto_contracts.common import StaffRole
from sotto_contracts.inbound import ClientUpserted, PracticeUpserted, StaffUpserted
from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings
from tests.support.amqp import Amqp
from tests.support.infra import REPO, Infrastructure
from tests.support.mail import MailCatcher
from tests.support.system import RunningSystem, running_system
from tests.support.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
EXPECT_TIMEOUT_MS = 20_000  # generous for a loaded shared machine; a healthy run is far faster
OUTPUT = REPO / "test-output" / "browser"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
CLIENT_BIRTHDAY = date(1990, 4, 12)
OWNER = "staff-owner"
OWNER_NAME = "Morgan Owner"
CLINICIAN = "staff-clinician"
CLINICIAN_NAME = "Dr. Jordan Lee"
CLIENT = "client-alex"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; installed with apt when missing (a browser is never downloaded)."""
    if not CHROMIUM.exists():
        apt = shutil.which("apt-get") or "apt-get"
        subprocess.run([apt, "update"], check=True)
        subprocess.run([apt, "install", "-y", "chromium"], check=True)
    assert CHROMIUM.exists(), "chromium is not installed"
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """Pages in separate browser contexts (separate cookie jars), closed after the test.

    Fails the test on a script error or a Content-Security-Policy violation in any page.
    """
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    async def open_page(viewport: dict[str, int] = PHONE) -> Page:
        context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT_MS)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert problems == []


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Awaitable[Path]]:
    async def take(page: Page, name: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{request.node.name}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
async def system(
    infra: Infrastructure, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[RunningSystem]:
    async with running_system(infra, namespace, OUTPUT / "logs" / request.node.name) as running:
        yield running


@dataclass
class Practice:
    """A seeded practice: an owner, a clinician and one client with a unique address."""

    practice_id: str
    slug: str
    client_email: str
    base_url: str

    def token(self, staff_id: str) -> str:
        return mint_staff_token(
            GatewaySettings(),
            practice_id=self.practice_id,
            staff_id=staff_id,
            lifetime=timedelta(minutes=30),
        )

    def staff(self, staff_id: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token(staff_id)}"},
            timeout=15,
        )

    async def configure(self, **settings: object) -> None:
        """Change practice settings as the owner (retried until the owner is projected)."""
        async with self.staff(OWNER) as owner:

            async def saved() -> int:
                return (await owner.patch("/api/staff/settings", json=settings)).status_code

            await eventually(saved, until=lambda status: status == 200, what="settings saved")

    async def send_secure_message(self, conversation_id: str, subject: str, body: str) -> None:
        async with self.staff(CLINICIAN) as clinician:

            async def opened() -> httpx.Response:
                return await clinician.post(
                    "/api/staff/conversations",
                    json={
                        "conversation_id": conversation_id,
                        "subject": subject,
                        "client_id": CLIENT,
                        "first_message": body,
                    },
                )

            answer = await eventually(
                opened, until=lambda r: r.status_code == 201, what="conversation opened"
            )
            assert answer.json()["ok"] is True


@pytest.fixture
async def practice(system: RunningSystem, amqp: Amqp, namespace: str) -> Practice:
    domain = f"{namespace}.example.org"
    seeded = Practice(namespace, namespace, f"alex@{domain}", system.gateway_url)
    events: list[Any] = [
        PracticeUpserted(practice_id=namespace, slug=seeded.slug, display_name="Calm Waters"),
        StaffUpserted(
            practice_id=namespace,
            staff_id=OWNER,
            display_name=OWNER_NAME,
            email=f"owner@{domain}",
            roles=[StaffRole.OWNER],
            can_view_others_conversations=True,
        ),
        StaffUpserted(
            practice_id=namespace,
            staff_id=CLINICIAN,
            display_name=CLINICIAN_NAME,
            email=f"jordan@{domain}",
            roles=[StaffRole.CLINICIAN],
            client_ids=[CLIENT],
        ),
        ClientUpserted(
            practice_id=namespace,
            client_id=CLIENT,
            display_name="Alex Rivera",
            email=seeded.client_email,
            date_of_birth=CLIENT_BIRTHDAY,
            primary_clinician_id=CLINICIAN,
            clinician_ids=[CLINICIAN],
        ),
    ]
    for event in events:
        await amqp.publish(event)
    await seeded.configure(
        client_notification_delay_seconds=0,
        banner="We reply within two working days.",
        edit_note="Please do not include urgent requests here.",
    )
    return seeded


async def link_from_mail(mail: MailCatcher, address: str, pattern: str) -> str:
    """The first URL matching `pattern` in mail to `address` (the address is unique per test)."""
    found = re.compile(pattern)

    async def links() -> list[str]:
        texts = [caught.text + caught.html for caught in await mail.to_address(address)]
        return [match.group(0) for text in texts for match in found.finditer(text)]

    return (await eventually(links, timeout=30, what=f"mail to {address}"))[0]
