"""py-spy flame graphs of service processes while a scenario runs."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.support.system import RunningSystem

PROFILES = Path(__file__).resolve().parent / "results"


def _record(py_spy: str, pid: int, output: Path, *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "-o", str(output), "--nonblocking", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@asynccontextmanager
async def profiled(
    system: RunningSystem, services: Iterable[str], label: str, enabled: bool
) -> AsyncIterator[list[Path]]:
    """`py-spy record` each service until the block ends; yields the SVG paths. Collapsed
    stacks go next to each SVG (`.txt`, for `bench/profile_top.py`)."""
    py_spy = shutil.which("py-spy")
    recorders: list[subprocess.Popen[bytes]] = []
    written: list[Path] = []
    if enabled and py_spy is not None:
        for name in services:
            process = system.services[name].process
            if process is None:
                continue
            output = PROFILES / f"profile-{label}-{name}.svg"
            recorders.append(_record(py_spy, process.pid, output))
            collapsed = output.with_suffix(".txt")
            recorders.append(_record(py_spy, process.pid, collapsed, "--format", "raw"))
            written.append(output)
    try:
        yield written
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            await asyncio.to_thread(recorder.wait, 60)
