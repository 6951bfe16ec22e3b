"""Scenario 2: a staff member's authenticated GET of a 50-message thread, from another process.

p99 comes from the open-loop generator (bench/loadgen.py) at a fixed rate; the maximum
rate from `wrk` (closed loop), or from the generator's closed loop where wrk is missing.
The baseline is bench/bare_app.py serving the same JSON from memory under the same uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.loadgen import HttpPool
from bench.practice import OWNER, BenchPractice, owner_pool
from tests.e2e.portal import staff_token
from tests.support.infra import REPO
from tests.support.serving import free_port
from tests.support.system import VENV_BIN, RunningSystem, ServiceProcess

THREAD_MESSAGES = 50
WRK_CONNECTIONS = 32
REQUESTS_PER_SECOND = re.compile(r"Requests/sec:\s+([\d.]+)")


@dataclass(frozen=True)
class Target:
    url: str
    headers: list[str]


@dataclass(frozen=True)
class ReadFigures:
    open_loop_rate: float
    achieved_per_second: float
    p50_ms: float
    p99_ms: float
    refused: int
    errors: int
    max_per_second: float
    tool: str


async def _created(pool: HttpPool, path: str, payload: dict[str, str]) -> None:
    response = await pool.request("POST", path, json.dumps(payload).encode())
    if response.status != 201:
        raise RuntimeError(f"{path} answered {response.status}: {response.body[:300]!r}")


async def build_thread(system: RunningSystem, practice: BenchPractice) -> tuple[str, bytes]:
    """A conversation with client 0 holding 50 messages; returns its id and the JSON body."""
    conversation_id = f"read-{uuid.uuid4().hex[:12]}"
    pool = owner_pool(system, practice)
    try:
        await _created(
            pool,
            "/api/staff/conversations",
            {
                "conversation_id": conversation_id,
                "subject": "A long thread",
                "client_id": practice.client_id(0),
                "first_message": "Message 1 of a long thread.",
            },
        )
        for number in range(2, THREAD_MESSAGES + 1):
            await _created(
                pool,
                f"/api/staff/conversations/{conversation_id}/messages",
                {"body": f"Message {number} of a long thread, with a sentence or two of text."},
            )
        thread = await pool.request("GET", f"/api/staff/conversations/{conversation_id}")
        shown = len(json.loads(thread.body)["messages"]) if thread.status == 200 else 0
        if shown < THREAD_MESSAGES:
            raise RuntimeError(f"the thread shows {shown} messages (status {thread.status})")
        return conversation_id, thread.body
    finally:
        pool.close()


def _loadgen(target: Target, *arguments: str) -> dict[str, float]:
    headers = [option for header in target.headers for option in ("--header", header)]
    output = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--url", target.url, *headers, *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def ensure_wrk() -> str | None:
    """wrk from Debian, installed on first use where apt-get can; None if unavailable."""
    found = shutil.which("wrk")
    if found is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)
        found = shutil.which("wrk")
    return found


def _max_rate(target: Target, seconds: float) -> tuple[float, str]:
    wrk = ensure_wrk()
    if wrk is None:
        closed = _loadgen(target, "--connections", str(WRK_CONNECTIONS), "--duration", str(seconds))
        return closed["achieved_per_second"], "loadgen closed loop"
    headers = [option for header in target.headers for option in ("-H", header)]
    duration = f"{max(1, round(seconds))}s"
    command = [wrk, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{duration}", "--timeout", "10s"]
    command += [*headers, target.url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = REQUESTS_PER_SECOND.search(output)
    if found is None:
        raise RuntimeError(f"wrk printed no rate: {output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx is not None:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error responses")
    return float(found.group(1)), f"wrk -t1 -c{WRK_CONNECTIONS}"


async def measure(target: Target, rate: float, seconds: float) -> ReadFigures:
    """Closed loop for the maximum, then open loop at `rate` for p99 (this order: an open loop
    above capacity leaves requests queued behind the gateway that a closed loop would wait on)."""
    maximum, tool = await asyncio.to_thread(_max_rate, target, seconds)
    opened = await asyncio.to_thread(
        _loadgen, target, "--rate", str(rate), "--duration", str(seconds)
    )
    await _until_caught_up(target)
    return ReadFigures(
        open_loop_rate=rate,
        achieved_per_second=opened["achieved_per_second"],
        p50_ms=opened["p50_ms"],
        p99_ms=opened["p99_ms"],
        refused=int(opened["refused"]),
        errors=int(opened["errors"]),
        max_per_second=maximum,
        tool=tool,
    )


async def _until_caught_up(target: Target, timeout: float = 180.0) -> None:
    """Wait until single GETs are answered promptly again: the open loop leaves a backlog
    behind an overloaded server, and the next repetition's closed loop would measure it."""
    headers = dict(header.split(": ", 1) for header in target.headers)
    deadline = time.monotonic() + timeout
    prompt = 0
    async with httpx.AsyncClient(headers=headers, timeout=5.0) as client:
        while prompt < 3 and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answered = (await client.get(target.url)).status_code == 200
            except httpx.HTTPError:
                answered = False
            prompt = prompt + 1 if answered and time.monotonic() - started < 1.0 else 0
            await asyncio.sleep(0.5)


def gateway_target(system: RunningSystem, practice: BenchPractice, conversation_id: str) -> Target:
    token = staff_token(practice.practice_id, OWNER)
    return Target(
        f"{system.gateway_url}/api/staff/conversations/{conversation_id}",
        [f"Authorization: Bearer {token}"],
    )


async def measure_bare(body: bytes, rate: float, seconds: float, log_dir: Path) -> ReadFigures:
    """The same body from a bare Litestar app under the gateway's uvicorn command line."""
    with tempfile.NamedTemporaryFile(suffix=".json") as stored:
        stored.write(body)
        stored.flush()
        port = free_port()
        await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
        bare = ServiceProcess(
            "bare",
            port,
            [
                str(VENV_BIN / "uvicorn"),
                "--factory",
                "bench.bare_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            {**_environment(), "BENCH_BARE_JSON": stored.name},
            log_dir / "bare.log",
        )
        bare.start()
        try:
            await bare.wait_healthy()
            return await measure(Target(f"{bare.url}/thread", []), rate, seconds)
        finally:
            bare.stop()


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}
