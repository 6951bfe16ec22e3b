"""CPU time of local processes: what `bench.trace` reports, and how the run waits for the
database to settle after the services restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

FERRETDB_PATTERN = "ferretdb --handler"


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_of(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


async def wait_for_quiet_database(
    *, busy_share: float = 0.15, window_seconds: float = 2.0, timeout_seconds: float = 240.0
) -> float:
    """Wait until the local FerretDB uses under `busy_share` of a core over a window (services
    just started scan their collections once); seconds waited. No local FerretDB: no wait."""
    pids = pids_of(FERRETDB_PATTERN)
    started = time.monotonic()
    while pids and time.monotonic() - started < timeout_seconds:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(window_seconds)
        if sum(cpu_seconds(pid) for pid in pids) - before < busy_share * window_seconds:
            break
    return time.monotonic() - started
