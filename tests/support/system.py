"""The whole system as separate OS processes, on free ports, in a test's own namespace."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.infra import REPO, Infrastructure
from tests.support.serving import free_port
from tests.support.waiting import eventually

VENV_BIN = REPO / ".venv" / "bin"
WORKERS = {
    "conversations": "sotto_conversations.main:create_app",
    "notifier": "sotto_notifier.main:create_app",
    "audit": "sotto_audit.main:create_app",
}
GATEWAY = "sotto_gateway.main:create_app"
ENV_PREFIX = {
    "conversations": "CONVERSATIONS",
    "notifier": "NOTIFIER",
    "audit": "AUDIT",
    "gateway": "GATEWAY",
}


@dataclass
class ServiceProcess:
    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    async def wait_healthy(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient(timeout=5) as client:

            async def status() -> int:
                if self.process is not None and self.process.poll() is not None:
                    log = self.log_path.read_text()[-3000:]
                    raise AssertionError(f"{self.name} exited early:\n{log}")
                try:
                    return (await client.get(f"{self.url}/health")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(status, until=lambda s: s == 200, timeout=timeout, what=self.name)

    async def restart(self) -> None:
        self.stop()
        self.start()
        await self.wait_healthy()


@dataclass
class RunningSystem:
    namespace: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    def database(self, service: str) -> str:
        return f"{self.namespace}_{service}"

    def recent_problems(self, per_service: int = 5) -> str:
        """The last warnings and errors each service logged, for a failing test's message."""
        lines: list[str] = []
        for service in self.services.values():
            logged = service.log_path.read_text(errors="replace").splitlines()
            problems = [line for line in logged if '"level": "WARNING"' in line or "ERROR" in line]
            lines += [f"{service.name}: {line[:400]}" for line in problems[-per_service:]]
        return "\n".join(lines) or "no warnings or errors logged"


def _service_env(
    infra: Infrastructure,
    namespace: str,
    name: str,
    gateway_url: str,
    extra: Mapping[str, str],
) -> dict[str, str]:
    prefix = ENV_PREFIX[name]
    return {
        **os.environ,
        "RABBITMQ_URL": infra.rabbitmq_url,
        "MONGODB_URL": infra.mongodb_url,
        "SMTP_HOST": infra.smtp_host,
        "SMTP_PORT": str(infra.smtp_port),
        "SOTTO_NAMESPACE": namespace,
        f"{prefix}_DATABASE": f"{namespace}_{name}",
        "GATEWAY_PUBLIC_BASE_URL": gateway_url,
        **extra,
    }


def _bind(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


@asynccontextmanager
async def running_system(
    infra: Infrastructure,
    namespace: str,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    instances: Mapping[str, int] | None = None,
) -> AsyncIterator[RunningSystem]:
    """Start conversations, notifier, audit and the gateway; stop them all afterwards."""
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    system = RunningSystem(namespace)
    for name, target in WORKERS.items():
        for index in range(instances.get(name, 1) if instances else 1):
            port = free_port()
            key = name if index == 0 else f"{name}-{index + 1}"
            system.services[key] = ServiceProcess(
                key,
                port,
                [str(VENV_BIN / "faststream"), "run", target, "--factory", *_bind(port)],
                _service_env(infra, namespace, name, gateway_url, env or {}),
                log_dir / f"{key}.log",
            )
    system.services["gateway"] = ServiceProcess(
        "gateway",
        gateway_port,
        [str(VENV_BIN / "uvicorn"), "--factory", GATEWAY, *_bind(gateway_port)],
        _service_env(infra, namespace, "gateway", gateway_url, env or {}),
        log_dir / "gateway.log",
    )
    for service in system.services.values():
        service.log_path.unlink(missing_ok=True)
    try:
        for service in system.services.values():
            service.start()
        await asyncio.gather(*(s.wait_healthy() for s in system.services.values()))
        yield system
    finally:
        for service in system.services.values():
            service.stop()
