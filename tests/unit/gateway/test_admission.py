"""The gateway's admission limit: a saturated instance refuses one request more at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar.types import Receive, Scope, Send

from sotto_gateway.api.middleware import Admission
from tests.support.waiting import eventually


class SlowBackend:
    """An ASGI app whose /api/ answers wait until released; everything else answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/api/fail"):
            raise RuntimeError("the handler failed")
        if scope["path"].startswith("/api/"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done", "more_body": False})


def client_of(admission: Admission, backend: SlowBackend) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=admission.middleware(backend))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_one_request_beyond_the_limit_is_refused_at_once_with_retry_after() -> None:
    refusals: list[None] = []
    admission = Admission(2, on_refused=lambda: refusals.append(None))
    backend = SlowBackend()
    async with client_of(admission, backend) as http:
        admitted = [asyncio.create_task(http.get(f"/api/threads/{n}")) for n in range(2)]

        async def in_progress() -> int:
            return admission.in_progress

        await eventually(in_progress, until=lambda count: count == 2, what="two requests admitted")

        refused = await asyncio.wait_for(http.get("/api/threads/3"), timeout=10)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "busy"
        assert len(refusals) == 1
        assert not any(task.done() for task in admitted)

        for not_counted in ("/health", "/metrics", "/static/sotto.css", "/o/calm/messages"):
            assert (await http.get(not_counted)).status_code == 200

        backend.release.set()
        assert [(await task).status_code for task in admitted] == [200, 200]
        assert admission.in_progress == 0
        assert (await http.get("/api/threads/4")).status_code == 200
        assert len(refusals) == 1


async def test_a_request_that_fails_gives_its_place_back() -> None:
    admission = Admission(1)
    backend = SlowBackend()
    backend.release.set()
    async with client_of(admission, backend) as http:
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await http.get("/api/fail")
        assert admission.in_progress == 0
        assert (await http.get("/api/threads/1")).status_code == 200
