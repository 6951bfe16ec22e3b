"""Benchmark bookkeeping: repetitions, medians, machine facts, the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pymongo import MongoClient

RESULTS = Path(__file__).resolve().parent / "results"
REPETITIONS = int(os.environ.get("BENCH_REPETITIONS", "3"))


@dataclass
class Figure:
    """One scenario: our figure against a baseline measured in the same run."""

    scenario: str
    metric: str
    ours: float
    baseline: float | None
    baseline_name: str
    goal: str
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.ours / self.baseline


async def median_of(
    measure: Callable[[], Awaitable[float]], repetitions: int = REPETITIONS
) -> tuple[float, list[float]]:
    runs = [await measure() for _ in range(repetitions)]
    return statistics.median(runs), runs


def database_server(url: str) -> str:
    """What answers at `url` (a local FerretDB's handler is the one scripts/infra ran)."""
    local = "mongodb://127.0.0.1:27017/"
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=5_000)
    with client:
        info = client.admin.command("buildInfo")
    if "ferretdbVersion" not in info:
        return f"MongoDB {info['version']}"
    if url != local:
        return f"FerretDB {info['ferretdbVersion']} at {url}"
    handler = os.environ.get("SOTTO_FERRETDB_HANDLER", "sqlite")
    return f"FerretDB {info['ferretdbVersion']} ({handler} handler, patched by scripts/infra)"


def machine(mongodb_url: str) -> dict[str, Any]:
    meminfo = (
        Path("/proc/meminfo").read_text().splitlines()[0] if Path("/proc/meminfo").exists() else ""
    )
    try:
        rabbit = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rabbit = "unknown"
    return {
        "cores": os.cpu_count(),
        "memory": meminfo.split(":", 1)[-1].strip(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": rabbit,
        "database": os.environ.get("BENCH_DATABASE_NAME") or database_server(mongodb_url),
        "faststream": version("faststream"),
        "pymongo": version("pymongo"),
        "litestar": version("litestar"),
        "aiosmtplib": version("aiosmtplib"),
        "repetitions": REPETITIONS,
    }


def render_table(figures: list[Figure]) -> str:
    header = f"{'scenario':<34} {'metric':<36} {'ours':>10} {'baseline':>10} {'ratio':>7}  goal"
    lines = [header, "-" * len(header)]
    for f in sorted(figures, key=lambda figure: figure.scenario[:1]):
        baseline = f"{f.baseline:10.1f}" if f.baseline is not None else f"{'-':>10}"
        ratio = f"{f.ratio:7.2f}" if f.ratio is not None else f"{'-':>7}"
        lines.append(f"{f.scenario:<34} {f.metric:<36} {f.ours:10.1f} {baseline} {ratio}  {f.goal}")
    return "\n".join(lines)


def write_results(
    figures: list[Figure], facts: dict[str, Any], path: Path = RESULTS / "latest.json"
) -> Path:
    """`facts`: the machine's (`machine()`) and the run's options."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": facts,
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
