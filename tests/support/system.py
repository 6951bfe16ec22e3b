"""The whole system as separate OS processes, on free ports, in a test's own namespace."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.infra import Infrastructure
from tests.support.processes import VENV_BIN, ServiceProcess, bind
from tests.support.serving import free_port

__all__ = ["VENV_BIN", "RunningSystem", "ServiceProcess", "running_system"]
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
            system.services[key] = ServiceProcess.worker(
                key,
                target,
                port,
                _service_env(infra, namespace, name, gateway_url, env or {}),
                log_dir / f"{key}.log",
            )
    system.services["gateway"] = ServiceProcess(
        "gateway",
        gateway_port,
        [str(VENV_BIN / "uvicorn"), "--factory", GATEWAY, *bind(gateway_port)],
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
