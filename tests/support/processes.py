"""One service as a separate OS process (`faststream run` / `uvicorn`), as ops run it.

Used for the whole system (`tests.support.system`), for a lone notifier killed with
SIGKILL (`tests/integration/notifier`, `tests/faults/test_notifier_kills.py`) and by the
benchmarks.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

from tests.support.infra import REPO
from tests.support.waiting import eventually

VENV_BIN = REPO / ".venv" / "bin"


def bind(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


@dataclass
class ServiceProcess:
    """A service process with its output in `log_path`; healthy when `/health` answers 200."""

    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def worker(
        cls, name: str, target: str, port: int, env: dict[str, str], log_path: Path
    ) -> ServiceProcess:
        """A FastStream worker: `target` is the `module:create_app` factory."""
        argv = [str(VENV_BIN / "faststream"), "run", target, "--factory", *bind(port)]
        return cls(name, port, argv, env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
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
                    log = self.log_path.read_text(errors="replace")[-3000:]
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

    async def __aenter__(self) -> Self:
        self.start()
        try:
            await self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.stop()
