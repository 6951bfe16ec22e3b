"""Security headers and request ids on every answer, including errors."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid

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


def header_limit_middleware(app: ASGIApp) -> ASGIApp:
    """Refuses oversized or too many request headers with 431 before any work is done."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            headers = list(scope.get("headers", []))
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > MAX_HEADER_COUNT or size > MAX_HEADER_BYTES:
                body = json.dumps(
                    {
                        "type": "urn:sotto:problem:headers_too_large",
                        "title": "Request Header Fields Too Large",
                        "status": 431,
                        "detail": "The request headers are too large.",
                        "code": "headers_too_large",
                    }
                ).encode()
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 431,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
                await send(start)
                end: HTTPResponseBodyEvent = {
                    "type": "http.response.body",
                    "body": body,
                    "more_body": False,
                }
                await send(end)
                return
        await app(scope, receive, send)

    return middleware
