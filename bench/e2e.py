"""Scenario 1 (and 5): staff POST through the gateway until the client's email is accepted.

At a fixed offered rate, message i opens a new conversation with client i and the latency
of i runs from the start of its POST to the catcher's receipt of client i's email. The rate
is raised step by step until p99 exceeds the limit or the system falls behind the offered
rate. When even the first step fails, the rate is halved until one keeps up; then the gap
between the highest rate kept and the lowest failed is bisected a few times. The figure is
the highest step that kept both, and the lowest that failed is where scaling is measured.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from bench.catcher import Catcher, Receipt
from bench.loadgen import HttpPool, percentile
from bench.practice import BenchPractice, owner_pool
from tests.support.system import RunningSystem

KEEPS_UP = 0.9  # delivered rate at least this share of the offered rate
DELIVERY_GRACE_SECONDS = 60.0
POST_TIMEOUT_SECONDS = 30.0
CLOCK_SLACK_SECONDS = 0.002  # the catcher stamps receipts to the millisecond
LOWEST_RATE = 2.0  # halving stops here: slower steps say nothing about throughput
BISECTIONS = 2


@dataclass(frozen=True)
class Step:
    offered_per_second: float
    messages: int
    accepted_posts: int
    delivered: int
    delivered_per_second: float
    p50_ms: float
    p99_ms: float

    def keeps_up(self, p99_limit_ms: float) -> bool:
        return (
            self.delivered == self.messages
            and self.delivered_per_second >= KEEPS_UP * self.offered_per_second
            and self.p99_ms <= p99_limit_ms
        )


@dataclass
class Ramp:
    steps: list[Step] = field(default_factory=list)

    def best(self, p99_limit_ms: float) -> Step | None:
        """The highest offered rate that kept up."""
        kept = [step for step in self.steps if step.keeps_up(p99_limit_ms)]
        return max(kept, key=lambda step: step.offered_per_second, default=None)

    def limit(self, p99_limit_ms: float) -> float | None:
        """The lowest offered rate above the best that did not keep up."""
        best = self.best(p99_limit_ms)
        floor = best.offered_per_second if best else 0.0
        failed = [
            step.offered_per_second
            for step in self.steps
            if not step.keeps_up(p99_limit_ms) and step.offered_per_second > floor
        ]
        return min(failed, default=None)

    def as_dict(self) -> list[dict[str, float]]:
        return [asdict(step) for step in self.steps]


async def _post_conversation(pool: HttpPool, practice: BenchPractice, index: int) -> bool:
    payload = {
        "conversation_id": f"bench-{uuid.uuid4().hex[:16]}",
        "subject": "Follow-up",
        "client_id": practice.client_id(index),
        "first_message": "Please see the notes from today's session in the portal.",
    }
    body = json.dumps(payload).encode()
    try:
        response = await asyncio.wait_for(
            pool.request("POST", "/api/staff/conversations", body), POST_TIMEOUT_SECONDS
        )
    except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
        return False
    return response.status == 201


async def _offer(
    pool: HttpPool, practice: BenchPractice, rate: float, clients: list[int]
) -> tuple[dict[int, float], int]:
    """POST `count` messages at `rate`/s; returns each client's POST start (epoch s)."""
    started_at: dict[int, float] = {}
    accepted = 0
    origin = time.perf_counter()

    async def one(index: int) -> None:
        nonlocal accepted
        started_at[index] = time.time()
        if await _post_conversation(pool, practice, index):
            accepted += 1

    tasks = []
    for sent, index in enumerate(clients):
        delay = origin + sent / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return started_at, accepted


def _step(
    rate: float, count: int, accepted: int, started_at: dict[int, float], receipts: list[Receipt]
) -> Step:
    first_receipt: dict[int, float] = {}
    for receipt in receipts:
        posted = started_at.get(receipt.client_index)
        if posted is not None and receipt.accepted_at >= posted - CLOCK_SLACK_SECONDS:
            first_receipt[receipt.client_index] = min(
                receipt.accepted_at, first_receipt.get(receipt.client_index, receipt.accepted_at)
            )
    latencies = [first_receipt[i] - started_at[i] for i in first_receipt]
    span = max(first_receipt.values(), default=0.0) - min(started_at.values(), default=0.0)
    return Step(
        offered_per_second=rate,
        messages=count,
        accepted_posts=accepted,
        delivered=len(first_receipt),
        delivered_per_second=len(first_receipt) / span if span > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


async def run_step(
    system: RunningSystem, practice: BenchPractice, catcher: Catcher, rate: float, seconds: float
) -> Step:
    count = min(practice.clients, max(1, int(rate * seconds)))
    pool = owner_pool(system, practice)
    try:
        started_at, accepted = await _offer(pool, practice, rate, practice.next_clients(count))
    finally:
        pool.close()
    receipts = await catcher.wait_for(practice, accepted, DELIVERY_GRACE_SECONDS)
    step = _step(rate, count, accepted, started_at, receipts)
    await catcher.delete([receipt.message_id for receipt in receipts])
    return step


def median_step(runs: list[Step]) -> Step:
    """Each field's median over repetitions of the same step."""
    return Step(
        offered_per_second=runs[0].offered_per_second,
        messages=runs[0].messages,
        accepted_posts=round(statistics.median(run.accepted_posts for run in runs)),
        delivered=round(statistics.median(run.delivered for run in runs)),
        delivered_per_second=statistics.median(run.delivered_per_second for run in runs),
        p50_ms=statistics.median(run.p50_ms for run in runs),
        p99_ms=statistics.median(run.p99_ms for run in runs),
    )


async def repeated_step(
    system: RunningSystem,
    practice: BenchPractice,
    catcher: Catcher,
    rate: float,
    seconds: float,
    repetitions: int,
) -> Step:
    runs = [await run_step(system, practice, catcher, rate, seconds) for _ in range(repetitions)]
    return median_step(runs)


async def ramp(
    measure: Callable[[float], Awaitable[Step]],
    rates: list[float],
    p99_limit_ms: float,
    *,
    lowest_rate: float = LOWEST_RATE,
    bisections: int = BISECTIONS,
) -> Ramp:
    """Raise the offered rate through `rates` until a step fails, halve it while none has
    kept up, then narrow the gap between the best kept rate and the lowest failed one."""
    result = Ramp()

    async def keeps_up_at(rate: float) -> bool:
        step = await measure(rate)
        result.steps.append(step)
        print(f"  e2e {rate:g}/s offered: {json.dumps(asdict(step))}", flush=True)
        return step.keeps_up(p99_limit_ms)

    kept: float | None = None
    failed: float | None = None
    for rate in rates:
        if not await keeps_up_at(rate):
            failed = rate
            break
        kept = rate
    while kept is None and failed is not None and failed / 2 >= lowest_rate:
        if await keeps_up_at(failed / 2):
            kept = failed / 2
        else:
            failed /= 2
    for _ in range(bisections):
        if kept is None or failed is None:
            break
        middle = float(round((kept + failed) / 2))
        if not kept < middle < failed:
            break
        if await keeps_up_at(middle):
            kept = middle
        else:
            failed = middle
    return result
