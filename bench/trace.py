"""Where one message's time goes: per-hop timeline of single staff POSTs, end to end.

    .venv/bin/python -m bench.trace [--messages 5] [--gap 1.0]
    .venv/bin/python -m bench.trace --read [--seconds 5]
    .venv/bin/python -m bench.trace --e2e 20 [--seconds 5]
    .venv/bin/python -m bench.trace --fanout 3000
    .venv/bin/python -m bench.trace --db-log /tmp/ops.jsonl [--read]   (+ bench.db_ops summary)

Starts the whole system on a fresh namespace (like `make bench`), seeds a few clients, then
posts one message at a time and prints, relative to the start of each POST, when the POST was
answered, when each event and command of that conversation reached the broker (a private queue
bound to the events and commands exchanges) and when the catcher accepted the email.
With `--read`: the CPU seconds each process (services, FerretDB, RabbitMQ) spends per staff GET
of a 50-message thread under `wrk -c8`: which process the read path's cost lands on. With
`--e2e RATE`: the same per staff message, POST to email, offered at RATE/s. With
`--fanout N`: the same per email of an announcement to N clients (the SMTP catcher counted too).
Not a benchmark: a diagnosis aid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import aio_pika

from bench.catcher import Catcher
from bench.cpu import FERRETDB_PATTERN, cpu_seconds, pids_of
from bench.db_ops import summary
from bench.e2e import run_step
from bench.fanout import announce_and_wait, checked
from bench.practice import BenchPractice, drop_namespace, owner_pool, seed, system_for
from bench.read_path import build_thread, ensure_wrk, gateway_target
from sotto_kit.mongo import COMMAND_LOG_ENV
from tests.support.infra import Infrastructure, infrastructure
from tests.support.system import RunningSystem

Arrivals = dict[str, list[tuple[str, float]]]


async def _listen(
    infra: Infrastructure, namespace: str, arrivals: Arrivals
) -> aio_pika.abc.AbstractRobustConnection:
    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for exchange in ("events", "commands"):
        await queue.bind(f"{namespace}.{exchange}", "#")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        at = time.time()
        async with message.process():
            body = json.loads(message.body)
            key = str(body.get("conversation_id") or body.get("notification_id") or "")
            arrivals[key].append((message.routing_key or "", at))

    await queue.consume(on_message)
    return connection


async def trace(infra: Infrastructure, messages: int, gap: float) -> None:
    namespace = f"trace{uuid.uuid4().hex[:8]}"
    practice = BenchPractice(f"{namespace}-p", messages + 2)
    catcher = Catcher(infra.smtp_api_url)
    arrivals: Arrivals = defaultdict(list)
    try:
        async with system_for(infra, namespace) as system:
            print(f"seeded in {await seed(infra, system, practice):.1f} s", flush=True)
            log_offset = _db_log_size()
            connection = await _listen(infra, namespace, arrivals)
            pool = owner_pool(system, practice)
            try:
                for index in practice.next_clients(messages):
                    conversation_id = f"trace-{uuid.uuid4().hex[:12]}"
                    payload = {
                        "conversation_id": conversation_id,
                        "subject": "Trace",
                        "client_id": practice.client_id(index),
                        "first_message": "A message to trace.",
                    }
                    started = time.time()
                    response = await pool.request(
                        "POST", "/api/staff/conversations", json.dumps(payload).encode()
                    )
                    answered = time.time()
                    receipts = [
                        r
                        for r in await catcher.wait_for(practice, 1, 30, poll=0.05)
                        if r.client_index == index
                    ]
                    while not receipts:
                        await asyncio.sleep(0.05)
                        receipts = [
                            r for r in await catcher.receipts(practice) if r.client_index == index
                        ]
                    await asyncio.sleep(0.3)  # let the last events arrive
                    print(f"\n{conversation_id} (status {response.status})")
                    print(f"  {(answered - started) * 1000:8.1f} ms  POST answered")
                    hops = sorted(arrivals[conversation_id], key=lambda hop: hop[1])
                    for routing_key, at in hops:
                        print(f"  {(at - started) * 1000:8.1f} ms  {routing_key}")
                    print(
                        f"  {(receipts[0].accepted_at - started) * 1000:8.1f} ms  catcher accepted"
                    )
                    await catcher.delete([r.message_id for r in receipts])
                    await asyncio.sleep(gap)
            finally:
                pool.close()
                await connection.close()
            _print_db_ops(log_offset, messages)
    finally:
        await drop_namespace(infra, namespace)


def _db_log_size() -> int:
    path = os.environ.get(COMMAND_LOG_ENV)
    return Path(path).stat().st_size if path and Path(path).exists() else 0


def _print_db_ops(offset: int, units: int) -> None:
    path = os.environ.get(COMMAND_LOG_ENV)
    if path and Path(path).exists():
        print(f"\ndatabase commands per unit ({units} units), from {path}:")
        print(summary(Path(path), units, offset))


def _processes(system: RunningSystem) -> dict[str, int]:
    processes = {
        name: service.process.pid
        for name, service in system.services.items()
        if service.process is not None
    }
    for name, pattern in (
        ("ferretdb", FERRETDB_PATTERN),
        ("rabbitmq", "beam.smp"),
        ("catcher", "smtp_catcher"),
    ):
        processes.update({f"{name}-{pid}": pid for pid in pids_of(pattern)})
    return processes


@asynccontextmanager
async def _cpu_cost(system: RunningSystem, unit: str) -> AsyncIterator[list[int]]:
    """CPU ms per unit of work by process, over the block; the block appends the unit count."""
    processes = _processes(system)
    log_offset = _db_log_size()
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    counted: list[int] = []
    yield counted
    after = {name: cpu_seconds(pid) for name, pid in processes.items()}
    units = sum(counted)
    total = 0.0
    print(f"{units} {unit}; CPU ms per unit by process (shared machine: others add noise)")
    for name in processes:
        spent = after[name] - before[name]
        total += spent
        print(f"  {name:28} {spent * 1000 / max(units, 1):7.2f} ms  ({spent:.1f} s)")
    print(f"  {'all':28} {total * 1000 / max(units, 1):7.2f} ms  ({total:.1f} s)")
    _print_db_ops(log_offset, units)


@asynccontextmanager
async def _seeded_system(
    infra: Infrastructure, clients: int
) -> AsyncIterator[tuple[RunningSystem, BenchPractice]]:
    """The whole system on a fresh namespace with a practice of `clients` seeded clients; the
    namespace is dropped afterwards."""
    namespace = f"trace{uuid.uuid4().hex[:8]}"
    practice = BenchPractice(f"{namespace}-p", clients)
    try:
        async with system_for(infra, namespace) as system:
            await seed(infra, system, practice)
            yield system, practice
    finally:
        await drop_namespace(infra, namespace)


async def read_cost(infra: Infrastructure, seconds: float) -> None:
    wrk = ensure_wrk()
    assert wrk is not None, "wrk is needed"
    async with _seeded_system(infra, 2) as (system, practice):
        conversation_id, _ = await build_thread(system, practice)
        target = gateway_target(system, practice, conversation_id)
        headers = [option for header in target.headers for option in ("-H", header)]
        command = [wrk, "-t1", "-c8", f"-d{max(1, round(seconds))}s", *headers, target.url]
        async with _cpu_cost(system, "GETs of a 50-message thread") as counted:
            output = (
                await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
            ).stdout
            found = re.search(r"(\d+) requests in", output)
            counted.append(int(found.group(1)) if found else 0)
            print(output)


async def e2e_cost(infra: Infrastructure, rate: float, seconds: float) -> None:
    """CPU per staff message, POST to email, at a fixed offered rate (the e2e scenario's step)."""
    catcher = Catcher(infra.smtp_api_url)
    clients = max(1, int(rate * seconds)) + 2
    async with (
        _seeded_system(infra, clients) as (system, practice),
        _cpu_cost(system, "staff messages, POST to email") as counted,
    ):
        step = await run_step(system, practice, catcher, rate, seconds)
        counted.append(step.delivered)
        print(json.dumps(asdict(step)))


async def fanout_cost(infra: Infrastructure, clients: int) -> None:
    """CPU per email of an announcement to `clients` clients, from the POST to the last email."""
    catcher = Catcher(infra.smtp_api_url)
    async with _seeded_system(infra, clients) as (system, practice):
        async with _cpu_cost(system, "announcement emails") as counted:
            posted_at, receipts = await announce_and_wait(system, practice, catcher)
            counted.append(len(receipts))
        print(json.dumps(asdict(await checked(practice, catcher, posted_at, receipts))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--read", action="store_true")
    parser.add_argument("--e2e", type=float, metavar="RATE", help="CPU per message at RATE/s")
    parser.add_argument("--fanout", type=int, metavar="N", help="CPU per email, to N clients")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--db-log", type=Path, help="log every service's database commands here")
    args = parser.parse_args()
    if args.db_log:
        os.environ[COMMAND_LOG_ENV] = str(args.db_log.resolve())
    with infrastructure() as infra:
        if args.read:
            asyncio.run(read_cost(infra, args.seconds))
        elif args.e2e:
            asyncio.run(e2e_cost(infra, args.e2e, args.seconds))
        elif args.fanout:
            asyncio.run(fanout_cost(infra, args.fanout))
        else:
            asyncio.run(trace(infra, args.messages, args.gap))


if __name__ == "__main__":
    main()
