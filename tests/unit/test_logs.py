"""JSON log lines (sotto_kit.logs) show secret path segments, such as link tokens, redacted."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from sotto_kit.logs import json_formatter

SECRET_PATHS = ["/l/{token}", "/api/client/links/{token}/open", "/api/portal/sign-in/{token}"]
TOKEN = "nvnnuCHk6Zzvs8OabQeMQJkdz94X2PxkiCeqPqoIaF0"


def access_line(path: str, secret_paths: list[str] = SECRET_PATHS) -> dict[str, str]:
    """A line as uvicorn's access logger writes it, through the service's formatter."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", path, "1.1", 200),
        None,
    )
    line: dict[str, str] = json.loads(json_formatter("gateway", secret_paths).format(record))
    return line


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/l/{TOKEN}", "/l/[redacted]"),
        (f"/l/{TOKEN}/", "/l/[redacted]/"),
        (f"/api/client/links/{TOKEN}/open", "/api/client/links/[redacted]/open"),
        (f"/api/client/links/{TOKEN}/verify", "/api/client/links/[redacted]/verify"),
        (f"/api/portal/sign-in/{TOKEN}?from=email", "/api/portal/sign-in/[redacted]"),
        ("/api/portal/calm-waters/sign-in", "/api/portal/calm-waters/sign-in"),
        ("/o/calm-waters/messages", "/o/calm-waters/messages"),
    ],
)
def test_the_secret_segment_of_a_path_is_redacted_and_its_shape_kept(
    path: str, logged: str
) -> None:
    line = access_line(path)
    assert line["message"] == f'127.0.0.1:50000 - "GET {logged} HTTP/1.1" 200'
    assert line["logger"] == "uvicorn.access"
    assert line["service"] == "gateway"


def test_without_secret_paths_nothing_is_redacted() -> None:
    assert TOKEN in access_line(f"/l/{TOKEN}", [])["message"]


@pytest.mark.parametrize("secret_paths", [SECRET_PATHS, []])
def test_an_access_line_shows_no_query_string(secret_paths: list[str]) -> None:
    """A staff inbox search is a query string of client names and words from messages."""
    line = access_line("/api/staff/inbox?search=panic&limit=20", secret_paths)
    assert line["message"] == '127.0.0.1:50000 - "GET /api/staff/inbox HTTP/1.1" 200'


def test_extra_fields_and_tracebacks_are_redacted_too() -> None:
    try:
        raise LookupError(f"no link at /l/{TOKEN}")
    except LookupError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("sotto", logging.ERROR, __file__, 1, "link failed", None, exc_info)
    record.url = f"http://127.0.0.1:8000/api/portal/sign-in/{TOKEN}"
    text = json_formatter("gateway", SECRET_PATHS).format(record)
    assert TOKEN not in text
    line = json.loads(text)
    assert line["url"] == "http://127.0.0.1:8000/api/portal/sign-in/[redacted]"
    assert "no link at /l/[redacted]" in line["exc_info"]
