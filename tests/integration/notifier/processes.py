"""Run the notifier as a separate OS process (`faststream run`), as ops do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from sotto_notifier.config import NotifierSettings
from tests.support.serving import free_port
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[3]


def notifier_environment(settings: NotifierSettings) -> dict[str, str]:
    return {
        **os.environ,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "MONGODB_URL": settings.mongodb_url,
        "SOTTO_NAMESPACE": settings.namespace,
        "SOTTO_DELIVERY_LIMIT": str(settings.delivery_limit),
        "LOG_LEVEL": "WARNING",
        "NOTIFIER_DATABASE": settings.database,
        "NOTIFIER_SMTP_HOST": settings.smtp_host,
        "NOTIFIER_SMTP_PORT": str(settings.smtp_port),
        "NOTIFIER_SMTP_TLS": settings.smtp_tls.value,
        "NOTIFIER_POOL_SIZE": str(settings.pool_size),
        "NOTIFIER_PREFETCH": str(settings.prefetch),
        "NOTIFIER_RATE_PER_SECOND": str(settings.rate_per_second),
        "NOTIFIER_BURST": str(settings.burst),
        "NOTIFIER_RETRY_DELAYS_SECONDS": str(settings.retry_delays_seconds),
        "NOTIFIER_OUTBOX_INTERVAL_SECONDS": str(settings.outbox_interval_seconds),
        "NOTIFIER_SWEEP_INTERVAL_SECONDS": str(settings.sweep_interval_seconds),
    }


class NotifierProcess:
    def __init__(self, settings: NotifierSettings) -> None:
        self._environment = notifier_environment(settings)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "faststream"),
                "run",
                "sotto_notifier.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self._environment,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self._process = self._launch()
        async with httpx.AsyncClient(timeout=2) as client:

            async def health() -> int:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise AssertionError("notifier process exited during start-up")
                try:
                    response = await client.get(f"http://127.0.0.1:{self.port}/health")
                except httpx.TransportError:
                    return 0
                return response.status_code

            await eventually(health, until=lambda status: status == 200, timeout=60)

    def kill(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    async def __aenter__(self) -> NotifierProcess:
        await self.start()
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.stop()
