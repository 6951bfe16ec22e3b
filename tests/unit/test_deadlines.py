"""A request carries the moment its caller stops waiting; past it, the request has expired."""

from __future__ import annotations

import time

from sotto_contracts.topology import REPLY_DEADLINE_HEADER
from sotto_kit.deadlines import deadline_header, is_expired


def test_a_request_expires_once_its_caller_stops_waiting() -> None:
    now_ms = int(time.time() * 1000)
    headers = deadline_header(10)
    assert 9_000 <= headers[REPLY_DEADLINE_HEADER] - now_ms <= 11_000
    assert not is_expired(headers, now_ms)
    assert not is_expired(headers, headers[REPLY_DEADLINE_HEADER])
    assert is_expired(headers, headers[REPLY_DEADLINE_HEADER] + 1)


def test_a_request_without_a_usable_deadline_never_expires() -> None:
    assert not is_expired({}, int(time.time() * 1000))
    assert not is_expired({REPLY_DEADLINE_HEADER: "soon"}, int(time.time() * 1000))
