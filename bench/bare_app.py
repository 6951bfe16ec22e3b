"""The read-path baseline: a bare Litestar endpoint returning a stored JSON body from memory.

    BENCH_BARE_JSON=/path/thread.json uvicorn --factory bench.bare_app:create_app

Same server and flags as the gateway, no authentication, no broker, no database: the
ceiling of the web stack itself for the same response.
"""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get

BODY_FILE = "BENCH_BARE_JSON"


def create_app() -> Litestar:
    body = Path(os.environ[BODY_FILE]).read_bytes()

    @get("/thread", sync_to_thread=False)
    def thread() -> Response[bytes]:
        return Response(body, media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[thread, health])
