"""Security headers and request ids on every answer, including errors."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

REQUEST_ID_HEADER = "x-request-id"
ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}
SCHEMA_PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; "
    "frame-ancestors 'none'"
)

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def install_request_id_logging() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RequestIdFilter) for existing in handler.filters):
            handler.addFilter(RequestIdFilter())


def _request_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    known = state.get("request_id")
    if isinstance(known, str):
        return known
    offered = next(
        (
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name.decode("latin-1").lower() == REQUEST_ID_HEADER
        ),
        "",
    )
    request_id = offered if ACCEPTABLE_REQUEST_ID.match(offered) else uuid.uuid4().hex
    state["request_id"] = request_id
    return request_id


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Makes the request id available to log lines written while handling the request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        token = current_request_id.set(_request_id(scope))
        try:
            await app(scope, receive, send)
        finally:
            current_request_id.reset(token)

    return middleware


async def add_security_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: runs for every answer, also errors raised outside a route."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    if scope["path"].startswith("/schema"):
        headers["content-security-policy"] = SCHEMA_PAGE_CSP
    headers[REQUEST_ID_HEADER] = _request_id(scope)


MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100


async def send_problem(
    send: Send, status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> None:
    """A problem+json answer sent from ASGI middleware, before any route runs."""
    body = json.dumps(
        {
            "type": f"urn:sotto:problem:{code}",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *((name.encode(), value.encode()) for name, value in (headers or {}).items()),
        ],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def header_limit_middleware(app: ASGIApp) -> ASGIApp:
    """Refuses oversized or too many request headers with 431 before any work is done."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            headers = list(scope.get("headers", []))
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > MAX_HEADER_COUNT or size > MAX_HEADER_BYTES:
                await send_problem(
                    send, 431, "headers_too_large", "The request headers are too large."
                )
                return
        await app(scope, receive, send)

    return middleware


BUSY_RETRY_AFTER_SECONDS = 1
LIMITED_PATHS = "/api/"


class Admission:
    """At most `limit` API requests are answered at once; one more is refused at once with 503
    `busy` and Retry-After. When the system behind the gateway is saturated, the requests it
    admits keep their latency and the rest learn so in a millisecond, instead of every request
    queueing until it times out. Only `/api/` does work behind the gateway: pages, static
    files, health, metrics and the schema are answered from the process and not counted."""

    def __init__(self, limit: int, on_refused: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self.in_progress = 0
        self._on_refused = on_refused

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(LIMITED_PATHS):
                await app(scope, receive, send)
                return
            if self.in_progress >= self.limit:
                self._on_refused()
                await send_problem(
                    send,
                    503,
                    "busy",
                    "The portal is busy right now; try again in a moment.",
                    {"retry-after": str(BUSY_RETRY_AFTER_SECONDS)},
                )
                return
            self.in_progress += 1
            try:
                await app(scope, receive, send)
            finally:
                self.in_progress -= 1

        return middleware
