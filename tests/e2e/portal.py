"""Thin HTTP clients for e2e tests: staff with a bearer token, clients with a session cookie."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import httpx

from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings
from tests.support.infra import REPO
from tests.support.mail import CaughtMail

LINK = re.compile(r"/l/([A-Za-z0-9_\-]{20,})")


def staff_token(practice_id: str, staff_id: str) -> str:
    from datetime import timedelta

    settings = GatewaySettings(state_dir=REPO / ".state" / "gateway")
    return mint_staff_token(
        settings, practice_id=practice_id, staff_id=staff_id, lifetime=timedelta(hours=1)
    )


def staff_client(base_url: str, practice_id: str, staff_id: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {staff_token(practice_id, staff_id)}"},
        timeout=30,
    )


def secure_link_token(mail: CaughtMail) -> str:
    found = LINK.search(mail.text) or LINK.search(mail.html)
    assert found, f"no secure link in email {mail.subject!r}"
    return found.group(1)


class ClientSession:
    """A client's browser, minus the browser: keeps the session cookie and CSRF token.

    The gateway's cookies are Secure; httpx will not send Secure cookies over plain http,
    so this client carries them by hand, as a browser on localhost would.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.cookies: dict[str, str] = {}
        self.csrf_token = ""

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value

    def _headers(self) -> dict[str, str]:
        headers = {"X-CSRF-Token": self.csrf_token} if self.csrf_token else {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, headers=self._headers(), **kwargs)
        self._remember(response)
        return response

    async def open_link(self, token: str) -> httpx.Response:
        return await self.request("POST", f"/api/client/links/{token}/open")

    async def verify(self, token: str, date_of_birth: str) -> httpx.Response:
        response = await self.request(
            "POST", f"/api/client/links/{token}/verify", json={"date_of_birth": date_of_birth}
        )
        if response.status_code == 200:
            self.csrf_token = response.json()["csrf_token"]
        return response

    async def close(self) -> None:
        await self.http.aclose()
