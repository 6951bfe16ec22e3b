"""Structured JSON logs on stdout. Log ids and kinds, never content or addresses."""

from __future__ import annotations

import logging
import sys

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


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for framework in FRAMEWORK_LOGGERS:
        framework_logger = logging.getLogger(framework)
        framework_logger.handlers.clear()
        framework_logger.propagate = True
