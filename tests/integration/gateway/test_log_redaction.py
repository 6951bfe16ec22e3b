"""Secure-link and sign-in tokens are bearer secrets, and a query string may hold a search of
client names and messages: no log line of the gateway shows either."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pythonjsonlogger.json import JsonFormatter

from tests.support.waiting import eventually


@contextmanager
def gateway_log() -> Iterator[io.StringIO]:
    """What the service's JSON log handler writes, with uvicorn's access lines on (the test
    server runs uvicorn at WARNING, a deployed gateway at INFO)."""
    handler = next(
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
        and isinstance(handler.formatter, JsonFormatter)
    )
    access = logging.getLogger("uvicorn.access")
    level = access.level
    written = io.StringIO()
    stream = handler.setStream(written)
    access.setLevel(logging.INFO)
    try:
        yield written
    finally:
        access.setLevel(level)
        handler.setStream(stream)


async def test_access_log_lines_show_token_paths_with_the_token_redacted(
    http: httpx.AsyncClient,
) -> None:
    link, sign_in = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with gateway_log() as written:
        assert (await http.get(f"/l/{link}")).status_code == 200
        assert (await http.post(f"/api/client/links/{link}/open")).status_code == 404
        assert (await http.get(f"/api/portal/sign-in/{sign_in}?from=email")).status_code == 410
        assert (await http.get("/api/staff/inbox?search=panic")).status_code == 401

        async def logged() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in written.getvalue().splitlines()]
            return [line for line in lines if line["logger"] == "uvicorn.access"]

        lines = await eventually(logged, until=lambda found: len(found) >= 4, what="access log")
    assert link not in written.getvalue()
    assert sign_in not in written.getvalue()
    # the test's own HTTP client logs its requests to the same handler, with their query
    gateways = [line for line in written.getvalue().splitlines() if '"logger": "httpx"' not in line]
    assert not [line for line in gateways if "panic" in line]
    messages = [line["message"] for line in lines]
    assert any('"GET /l/[redacted] HTTP/1.1" 200' in message for message in messages)
    assert any('"POST /api/client/links/[redacted]/open HTTP/1.1" 404' in m for m in messages)
    assert any('"GET /api/portal/sign-in/[redacted] HTTP/1.1" 410' in m for m in messages)
    assert any('"GET /api/staff/inbox HTTP/1.1" 401' in m for m in messages)
