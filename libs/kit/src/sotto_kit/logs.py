"""Structured JSON logs on stdout. Log ids and kinds, never content or addresses; paths that
carry a secret (a link token) show it redacted, and access lines show no query string (a
search holds client names and words from messages)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

FRAMEWORK_LOGGERS = (
    "faststream",
    "faststream.access",
    "faststream.access.rabbit",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "litestar",
)
ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
PATH_PARAMETER = re.compile(r"\{[^{}]*\}")
# One path segment as it shows inside a JSON string: a quote or backslash ends it, so a
# redaction never cuts an escape sequence in two.
PATH_SEGMENT = r"[^/?#\s\"\\]+"


class _JsonLines(JsonFormatter):
    """One JSON object per line; a `secret` match anywhere in it (message, extra fields,
    traceback) is replaced by `shown[number of the alternative that matched]`."""

    def __init__(self, service: str, secret: re.Pattern[str] | None, shown: list[str]) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
        self._secret = secret
        self._shown = shown

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(_without_query(record))
        if self._secret is None:
            return line
        return self._secret.sub(lambda found: self._shown[found.lastindex or 0], line)


def _without_query(record: logging.LogRecord) -> logging.LogRecord:
    """An access record (`'%s - "%s %s HTTP/%s" %d'`: client, method, path with its query
    string, version, status) with its path only; any other record as it is."""
    args = record.args
    if record.name != ACCESS_LOGGER or not isinstance(args, tuple) or len(args) < 3:
        return record
    client, method, target, *rest = args
    if not isinstance(target, str) or "?" not in target:
        return record
    path = target.partition("?")[0]
    return logging.makeLogRecord({**record.__dict__, "args": (client, method, path, *rest)})


def json_formatter(service: str, secret_paths: Iterable[str] = ()) -> logging.Formatter:
    """`secret_paths` are route templates such as `/api/client/links/{token}/open`: a path that
    starts like one shows its `{...}` segments as [redacted], whatever follows the last of them
    (`/api/client/links/[redacted]/verify`, `/api/client/links/[redacted]?x=1`)."""
    shown: dict[str, str] = {}
    for template in secret_paths:
        literals = PATH_PARAMETER.split(template)[:-1]
        if literals:
            pattern = PATH_SEGMENT.join(re.escape(literal) for literal in literals) + PATH_SEGMENT
            shown[pattern] = REDACTED.join(literals) + REDACTED
    if not shown:
        return _JsonLines(service, None, [])
    patterns = sorted(shown, key=len, reverse=True)
    secret = re.compile("|".join(f"({pattern})" for pattern in patterns))
    return _JsonLines(service, secret, ["", *(shown[pattern] for pattern in patterns)])


def configure_logging(service: str, level: str = "INFO", secret_paths: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter(service, secret_paths))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for framework in FRAMEWORK_LOGGERS:
        framework_logger = logging.getLogger(framework)
        framework_logger.handlers.clear()
        framework_logger.propagate = True
