"""Login CSRF: another site's page must not start a session in a visitor's browser (signing
them in to an account of its choosing), and a new session ends the one the browser had."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sotto_gateway.config import GatewaySettings
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY
from tests.integration.gateway.support import SESSION_COOKIE, Broker, Watch, adopt_session
from tests.integration.gateway.test_links import issue_link
from tests.integration.gateway.test_sign_in_and_sessions import request_link

ATTACKER = "https://attacker.example"
FORGED: list[dict[str, str]] = [
    {"Origin": ATTACKER},
    {"Origin": ATTACKER, "Referer": "http://127.0.0.1:8000/o/calm-waters/messages"},
    {"Origin": "null"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    {"Referer": f"{ATTACKER}/cute-cats"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"},
    {"Origin": "https://127.0.0.1:8000"},
    {"Origin": "http://127.0.0.1:8001"},
]


@pytest.fixture
def same_origin(gateway_settings: GatewaySettings) -> dict[str, str]:
    """What a browser sends from the portal's own pages (the tests' public_base_url)."""
    assert gateway_settings.public_base_url == "http://127.0.0.1:8000"
    return {"Origin": gateway_settings.public_base_url, "Sec-Fetch-Site": "same-origin"}


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "cross_origin"
    assert SESSION_COOKIE not in answer.cookies


async def test_a_sign_in_link_is_used_only_from_the_portals_own_pages(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    same_origin: dict[str, str],
) -> None:
    token = await request_link(http, notifications, "alex@example.org")
    for headers in FORGED:
        assert_refused(await http.post(f"/api/portal/sign-in/{token}/continue", headers=headers))
        assert_refused(await http.post(f"/api/portal/sign-in/{token}", headers=headers))
    assert not events.of("gateway.session_started.v1")

    followed = await http.post(f"/api/portal/sign-in/{token}/continue", headers=same_origin)
    assert followed.status_code == 303, followed.text
    assert SESSION_COOKIE in followed.cookies

    token = await request_link(http, notifications, "alex@example.org", count=2)
    used = await http.post(
        f"/api/portal/sign-in/{token}", headers={"Referer": "http://127.0.0.1:8000/x"}
    )
    assert used.status_code == 200, used.text
    await events.wait_for("gateway.session_started.v1", count=2)


async def test_a_secure_link_is_verified_only_from_the_portals_own_pages(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    same_origin: dict[str, str],
) -> None:
    token = await issue_link(broker, notifications)
    birthday = {"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    for headers in FORGED:
        forged = await http.post(
            f"/api/client/links/{token}/verify", json=birthday, headers=headers
        )
        assert_refused(forged)
    verified = await http.post(
        f"/api/client/links/{token}/verify", json=birthday, headers=same_origin
    )
    assert verified.status_code == 200, verified.text
    [started] = await events.wait_for("gateway.session_started.v1")
    assert started["via"] == "secure_link"
    assert not events.of("gateway.verification_failed.v1")


async def test_a_new_session_ends_the_one_the_browser_had(
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    events: Watch,
    same_origin: dict[str, str],
) -> None:
    token = await request_link(http, notifications, "sam@example.org")
    first = await http.post(f"/api/portal/sign-in/{token}", headers=same_origin)
    assert first.status_code == 200, first.text
    adopt_session(http, first)
    earlier_key = first.cookies[SESSION_COOKIE]
    [earlier] = await events.wait_for("gateway.session_started.v1")

    token = await request_link(http, notifications, "alex@example.org", count=2)
    followed = await http.post(f"/api/portal/sign-in/{token}/continue", headers=same_origin)
    assert followed.status_code == 303, followed.text
    [ended] = await events.wait_for("gateway.session_ended.v1")
    assert ended["session_ref"] == earlier["session_ref"]
    assert ended["reason"] == "replaced"

    http.cookies.set(SESSION_COOKIE, earlier_key)
    assert (await http.get("/api/client/session")).status_code == 401
    http.cookies.set(SESSION_COOKIE, followed.cookies[SESSION_COOKIE])
    assert (await http.get("/api/client/session")).json()["principal"] == {
        "kind": "client",
        "id": "c1",
    }
