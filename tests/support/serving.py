"""Run an ASGI app (a worker's AsgiFastStream or the gateway) in-process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from tests.support.waiting import eventually

_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: the kernel may
    offer a just-released port again before the first caller's server has bound it (a gateway
    and a notifier were once given the same port)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@asynccontextmanager
async def serve(app: Any, *, health_path: str = "/health") -> AsyncIterator[str]:
    """Start `app` with uvicorn in this event loop; yield its base URL once healthy."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:

            async def healthy() -> int:
                if task.done():
                    task.result()
                    raise AssertionError("server stopped during start-up")
                try:
                    return (await client.get(health_path)).status_code
                except httpx.TransportError:
                    return 0

            await eventually(healthy, until=lambda status: status == 200, what="health 200")
        yield base_url
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=45)
        except TimeoutError:
            # Graceful shutdown waits for in-flight handlers (broker graceful_timeout); a test
            # that already checked its behaviour does not fail on a slow drain of the rest.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
