"""`make bench`: every scenario against its same-run baseline, as a table and as JSON.

    .venv/bin/python -m bench [--quick] [--fanout-clients N] [--only e2e,read,...] [--profile]

Not a test: it never fails the suite. BENCH_REPETITIONS (default 3) sets the repetitions
whose median each figure is; --quick means one repetition and small counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bench import audit_bench, notifier_bench
from bench.baselines import raw_rabbitmq_rate, raw_smtp_rate
from bench.catcher import Catcher
from bench.cpu import wait_for_quiet_database
from bench.e2e import Ramp, Step, ramp, repeated_step
from bench.fanout import FanoutResult, fan_out
from bench.harness import (
    REPETITIONS,
    Figure,
    machine,
    median_of,
    render_table,
    write_results,
)
from bench.practice import (
    LOGS,
    BenchPractice,
    drop_namespace,
    purge_queues,
    seed,
    system_for,
    wait_for_quiet_queues,
)
from bench.profiling import profiled
from bench.read_path import ReadFigures, build_thread, gateway_target, measure, measure_bare
from tests.support.infra import Infrastructure, heal_local_broker, infrastructure
from tests.support.system import RunningSystem

SCENARIOS = ("e2e", "read", "fanout", "scaling", "notifier", "audit")
SYSTEM_SCENARIOS = frozenset({"e2e", "read", "fanout", "scaling"})  # on one seeded system
SCALING: tuple[dict[str, int], ...] = (
    {},  # 1 + 1 again, restarted on the same data as the others: the base of the ratios
    {"notifier": 2, "conversations": 1},
    {"notifier": 1, "conversations": 2},
    {"notifier": 2, "conversations": 2},
)
SMTP_CONNECTIONS = 4
# A standalone repetition (notifier, audit) that takes longer has hung: a broker that stops
# answering AMQP handshakes (RabbitMQ 3.10 out of file handles did) makes nothing time out.
REPETITION_TIMEOUT_SECONDS = 900.0

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    repetitions: int
    scenarios: frozenset[str]
    e2e_rates: list[float]
    e2e_seconds: float
    p99_limit_ms: float
    scaling_rate: float | None
    """None: the lowest rate the e2e ramp found 1+1 not keeping up with."""
    read_rate: float
    read_seconds: float
    fanout_clients: int
    raw_count: int
    notifier_count: int
    audit_events: int
    profile: bool

    @property
    def e2e_clients(self) -> int:
        largest_rate = max([*self.e2e_rates, self.scaling_rate or 0.0])
        largest_step = int(largest_rate * self.e2e_seconds) + 1
        return 2 * largest_step  # consecutive steps never share a client


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, small counts")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--fanout-clients", type=int, default=None)
    parser.add_argument("--e2e-rates", default=None, help="offered rates, e.g. 50,100,200")
    parser.add_argument("--e2e-seconds", type=float, default=None)
    parser.add_argument("--read-seconds", type=float, default=None)
    parser.add_argument(
        "--scaling-rate",
        type=float,
        default=None,
        help="offered msgs/s (default: the lowest e2e rate 1+1 did not keep up with)",
    )
    parser.add_argument("--notifier-count", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the services (SVGs)")
    args = parser.parse_args()
    quick = bool(args.quick)
    rates = args.e2e_rates or ("20,50" if quick else "50,100,200,300,400")
    return Options(
        repetitions=1 if quick else REPETITIONS,
        scenarios=frozenset(args.only.split(",")),
        e2e_rates=[float(rate) for rate in rates.split(",")],
        e2e_seconds=args.e2e_seconds or (2.0 if quick else 4.0),
        p99_limit_ms=250.0,
        scaling_rate=args.scaling_rate,
        read_rate=500.0,
        read_seconds=args.read_seconds or (2.0 if quick else 10.0),
        fanout_clients=args.fanout_clients or (200 if quick else 10_000),
        raw_count=400 if quick else 5_000,
        notifier_count=args.notifier_count or (100 if quick else 500),
        audit_events=300 if quick else audit_bench.EVENTS,
        profile=bool(args.profile),
    )


def _is_bench_leftover(address: str) -> bool:
    """Addresses the raw loops and notifier_bench send to (they never clean up)."""
    local, _, domain = address.partition("@")
    return (domain == "example.org" and local.startswith("bench")) or (
        domain == "bench.example.org" and local.startswith("raw")
    )


@dataclass(frozen=True)
class Baselines:
    smtp_per_second: float
    rabbitmq_per_second: float


async def measure_baselines(infra: Infrastructure, options: Options, catcher: Catcher) -> Baselines:
    smtp, _ = await median_of(
        lambda: raw_smtp_rate(
            infra.smtp_host, infra.smtp_port, options.raw_count, SMTP_CONNECTIONS
        ),
        options.repetitions,
    )
    await catcher.delete_to(_is_bench_leftover)
    rabbit, _ = await median_of(
        lambda: raw_rabbitmq_rate(infra.rabbitmq_url, options.raw_count), options.repetitions
    )
    print(f"baselines: raw SMTP {smtp:.0f}/s, raw RabbitMQ {rabbit:.0f}/s", flush=True)
    return Baselines(smtp, rabbit)


def e2e_figures(result: Ramp, options: Options, baselines: Baselines) -> list[Figure]:
    best = result.best(options.p99_limit_ms)
    shown: Step = best or result.steps[0]
    sustained = best.delivered_per_second if best else 0.0
    scenario = "1 e2e POST->email (1+1 inst.)"
    extra = {"steps": result.as_dict(), "p99_limit_ms": options.p99_limit_ms}
    at = f"at {shown.offered_per_second:g}/s"
    return [
        Figure(scenario, "sustained msgs/s, p99<=250", sustained, baselines.smtp_per_second,
               "raw aiosmtplib loop (emails/s)", ">= 300/s", extra=extra),
        Figure(scenario, "sustained vs raw RabbitMQ", sustained, baselines.rabbitmq_per_second,
               "raw aio-pika publish+consume", "-"),
        Figure(scenario, f"p50 ms {at}", shown.p50_ms, None, "-", "-"),
        Figure(scenario, f"p99 ms {at}", shown.p99_ms, None, "-", "<= 250 ms"),
    ]  # fmt: skip


def read_figures(ours: ReadFigures, bare: ReadFigures, seconds: float) -> list[Figure]:
    scenario = "2 read: GET 50-msg thread"
    extra = {"gateway": asdict(ours), "bare": asdict(bare)}
    requests = round(ours.open_loop_rate * seconds)
    return [
        Figure(scenario, f"p99 ms open loop {ours.open_loop_rate:.0f}/s", ours.p99_ms,
               bare.p99_ms, "bare Litestar, same uvicorn", "<= 25 ms", extra=extra),
        Figure(scenario, f"refused 503 at once, of {requests}", float(ours.refused),
               float(bare.refused), "bare Litestar, same uvicorn", "0"),
        Figure(scenario, f"failed/timed out of {requests} (10 s)", float(ours.errors),
               float(bare.errors), "bare Litestar, same uvicorn", "0"),
        Figure(scenario, f"max req/s ({ours.tool})", ours.max_per_second, bare.max_per_second,
               "bare Litestar, same uvicorn", "ratio >= 0.40"),
    ]  # fmt: skip


def fanout_figures(runs: list[FanoutResult], baselines: Baselines) -> list[Figure]:
    seconds = statistics.median(run.seconds for run in runs)
    clients = runs[0].clients
    scenario = f"3 fan-out to {clients} clients"
    raw_seconds = clients / baselines.smtp_per_second
    wrong = sum(run.wrong_envelopes for run in runs)
    missing_or_twice = sum(run.missing + run.duplicates for run in runs)
    extra = {
        "runs": [
            {**asdict(run), "missing": run.missing, "duplicates": run.duplicates} for run in runs
        ]
    }
    return [
        Figure(scenario, "seconds to last email", seconds, raw_seconds,
               "raw aiosmtplib loop, same count", "< 60 s", [run.seconds for run in runs],
               extra=extra),
        Figure(scenario, "emails/s (to the last, or the wait)",
               statistics.median(run.emails_per_second for run in runs),
               baselines.smtp_per_second, "raw aiosmtplib loop", "> clients / 60",
               [run.emails_per_second for run in runs]),
        Figure(scenario, "envelopes not exactly 1 rcpt", float(wrong), None, "-", "0"),
        Figure(scenario, "not reached in the wait or twice", float(missing_or_twice), None, "-",
               "0"),
    ]  # fmt: skip


async def with_seeded_system(
    infra: Infrastructure,
    namespace: str,
    instances: dict[str, int],
    body: Callable[[RunningSystem], Awaitable[None]],
) -> None:
    async with system_for(infra, namespace, instances=instances) as system:
        await body(system)


async def run_system_scenarios(
    infra: Infrastructure, options: Options, catcher: Catcher, baselines: Baselines
) -> list[Figure]:
    """Scenarios 1, 2, 3 and 5 on one namespace, seeded once, restarted per instance count."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    practice = BenchPractice(f"{namespace}-p", options.e2e_clients)
    crowd = BenchPractice(f"{namespace}-crowd", options.fanout_clients)
    figures: list[Figure] = []
    ramps: list[Ramp] = []

    async def single(system: RunningSystem) -> None:
        print(f"seeding {practice.clients} clients ...", flush=True)
        print(f"  seeded in {await seed(infra, system, practice):.1f} s", flush=True)
        # the projections have every client, but audit may still be recording the seeding
        await wait_for_quiet_queues(infra.rabbitmq_management_url, namespace)
        if "e2e" in options.scenarios:
            figures.extend(
                await guarded(
                    "e2e", scenario_e2e(system, practice, catcher, options, baselines, ramps)
                )
            )
        if "fanout" in options.scenarios:
            figures.extend(
                await guarded(
                    "fan-out", scenario_fanout(infra, system, crowd, catcher, options, baselines)
                )
            )
        if "read" in options.scenarios:  # last, once the steps above have drained
            await wait_for_quiet_queues(infra.rabbitmq_management_url, namespace)
            figures.extend(await guarded("read", scenario_read(system, practice, options)))

    try:
        await with_seeded_system(infra, namespace, {}, single)
        await asyncio.to_thread(purge_queues, infra.rabbitmq_management_url, namespace)
        if "scaling" in options.scenarios:
            rate = scaling_rate(options, ramps[0] if ramps else None)
            figures.extend(
                await scenario_scaling(infra, namespace, practice, catcher, options, rate)
            )
    finally:
        await drop_namespace(infra, namespace)
    return figures


async def scenario_fanout(
    infra: Infrastructure,
    system: RunningSystem,
    crowd: BenchPractice,
    catcher: Catcher,
    options: Options,
    baselines: Baselines,
) -> list[Figure]:
    print(f"seeding {crowd.clients} clients for the fan-out ...", flush=True)
    print(f"  seeded in {await seed(infra, system, crowd):.1f} s", flush=True)
    await wait_for_quiet_queues(infra.rabbitmq_management_url, system.namespace)
    services = ("gateway", "conversations", "notifier")
    async with profiled(system, services, "fanout", options.profile):
        runs = [await fan_out(system, crowd, catcher) for _ in range(options.repetitions)]
    print(f"  fan-out: {[asdict(run) for run in runs]}", flush=True)
    return fanout_figures(runs, baselines)


async def scenario_e2e(
    system: RunningSystem,
    practice: BenchPractice,
    catcher: Catcher,
    options: Options,
    baselines: Baselines,
    ramps: list[Ramp],
) -> list[Figure]:
    print("scenario 1: end to end", flush=True)
    services = ("gateway", "conversations", "notifier", "audit")

    def measure(rate: float) -> Awaitable[Step]:
        return repeated_step(
            system, practice, catcher, rate, options.e2e_seconds, options.repetitions
        )

    async with profiled(system, services, "e2e", options.profile):
        result = await ramp(measure, options.e2e_rates, options.p99_limit_ms)
    ramps.append(result)
    return e2e_figures(result, options, baselines)


def scaling_rate(options: Options, e2e: Ramp | None) -> float:
    """Scaling shows where the bottleneck moves only at a rate one instance each falls
    behind at: the e2e ramp's lowest failed step, unless one was given."""
    if options.scaling_rate is not None:
        return options.scaling_rate
    limit = e2e.limit(options.p99_limit_ms) if e2e else None
    return limit if limit is not None else max(options.e2e_rates)


def scaling_figure(instances: dict[str, int], step: Step, base: Step | None) -> Figure:
    notifiers = instances.get("notifier", 1)
    conversations = instances.get("conversations", 1)
    return Figure(
        f"5 scaling {notifiers} notif. + {conversations} conv.",
        f"delivered/s at {step.offered_per_second:g}/s offered",
        step.delivered_per_second,
        base.delivered_per_second if base else None,
        "1 notifier + 1 conversations" if base else "-",
        "ratio shows the bottleneck",
        extra={"step": asdict(step)},
    )


async def scaling_step(
    system: RunningSystem,
    practice: BenchPractice,
    catcher: Catcher,
    options: Options,
    rate: float,
) -> Step:
    waited = await wait_for_quiet_database()
    print(f"  database quiet after {waited:.0f} s (start-up scans)", flush=True)
    step = await repeated_step(
        system, practice, catcher, rate, options.e2e_seconds, options.repetitions
    )
    print(f"  {asdict(step)}", flush=True)
    return step


async def scenario_scaling(
    infra: Infrastructure,
    namespace: str,
    practice: BenchPractice,
    catcher: Catcher,
    options: Options,
    rate: float,
) -> list[Figure]:
    """The same offered rate with each layout, after the other scenarios filled the database
    and once the restarted services have settled: 1 + 1 first, the base of the ratios."""
    figures: list[Figure] = []
    base: Step | None = None
    for instances in SCALING:
        steps: list[Step] = []

        async def record(system: RunningSystem, into: list[Step] = steps) -> None:
            into.append(await scaling_step(system, practice, catcher, options, rate))

        print(f"scenario 5: scaling at {rate:g}/s, {instances or '1 + 1'}", flush=True)
        await guarded("scaling", with_none(with_seeded_system(infra, namespace, instances, record)))
        if not steps:
            continue
        figures.append(scaling_figure(instances, steps[0], base))
        if not instances:
            base = steps[0]
    return figures


async def scenario_read(
    system: RunningSystem, practice: BenchPractice, options: Options
) -> list[Figure]:
    print("scenario 2: read path", flush=True)
    conversation_id, body = await build_thread(system, practice)
    target = gateway_target(system, practice, conversation_id)
    async with profiled(system, ("gateway", "conversations"), "read", options.profile):
        ours = await measure_repeated(
            lambda: measure(target, options.read_rate, options.read_seconds), options.repetitions
        )
    bare = await measure_repeated(
        lambda: measure_bare(body, options.read_rate, options.read_seconds, LOGS / "bare"),
        options.repetitions,
    )
    print(f"  gateway {asdict(ours)}\n  bare {asdict(bare)}", flush=True)
    return read_figures(ours, bare, options.read_seconds)


async def measure_repeated(
    measure_once: Callable[[], Awaitable[ReadFigures]], repetitions: int
) -> ReadFigures:
    runs = [await measure_once() for _ in range(repetitions)]
    return ReadFigures(
        open_loop_rate=runs[0].open_loop_rate,
        achieved_per_second=statistics.median(run.achieved_per_second for run in runs),
        p50_ms=statistics.median(run.p50_ms for run in runs),
        p99_ms=statistics.median(run.p99_ms for run in runs),
        refused=round(statistics.median(run.refused for run in runs)),
        errors=round(statistics.median(run.errors for run in runs)),
        max_per_second=statistics.median(run.max_per_second for run in runs),
        tool=runs[0].tool,
    )


def _median_field(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


async def repetitions(
    name: str, infra: Infrastructure, count: int, measure_once: Callable[[], Awaitable[T]]
) -> tuple[list[T], int]:
    """`count` runs, each on a broker that answers (restarted if it stopped); a run that fails
    or hangs is reported and tried once more. The runs, and how many were tried again."""
    runs: list[T] = []
    retried = 0
    for _ in range(count):
        for attempt in (1, 2):
            await asyncio.to_thread(heal_local_broker, infra)
            try:
                async with asyncio.timeout(REPETITION_TIMEOUT_SECONDS):
                    runs.append(await measure_once())
                break
            except Exception as error:
                if attempt == 2:
                    raise
                retried += 1
                print(f"{name}: a repetition failed ({error!r}); trying it again", flush=True)
    return runs, retried


async def scenario_notifier(
    infra: Infrastructure, options: Options, catcher: Catcher
) -> list[Figure]:
    print("scenario 4: notifier", flush=True)
    runs, retried = await repetitions(
        "notifier",
        infra,
        options.repetitions,
        lambda: notifier_bench.run_async(options.notifier_count),
    )
    await catcher.delete_to(_is_bench_leftover)
    raw = _median_field(runs, "raw_smtp_emails_per_second")
    one = _median_field(runs, "notifier_1_instance_emails_per_second")
    two = _median_field(runs, "notifier_2_instances_emails_per_second")
    extra = {"runs": runs, "repetitions_tried_again": retried}
    return [
        Figure("4 notifier, 1 instance", "emails/s", one, raw, "raw aiosmtplib, same pool",
               ">= 0.70 of raw", extra=extra),
        Figure("4 notifier, 2 instances", "emails/s", two, raw, "raw aiosmtplib, same pool",
               "> 1 instance"),
    ]  # fmt: skip


async def scenario_audit(infra: Infrastructure, options: Options) -> list[Figure]:
    print("scenario 4: audit", flush=True)
    runs, retried = await repetitions(
        "audit", infra, options.repetitions, lambda: audit_bench.audit_bench(options.audit_events)
    )
    return [
        Figure(
            "4 audit ingest",
            "events/s",
            _median_field(runs, "audit_events_per_second"),
            _median_field(runs, "raw_insert_loop_per_second"),
            "raw insert_one loop",
            ">= 0.60 of raw",
            extra={"runs": runs, "repetitions_tried_again": retried},
        )
    ]


async def with_none(work: Awaitable[None]) -> list[Figure]:
    await work
    return []


async def guarded(name: str, scenario: Awaitable[list[Figure]]) -> list[Figure]:
    """One scenario's failure (say, the database restarted under it) spares the others."""
    try:
        return await scenario
    except Exception as error:  # reported, and the run goes on
        print(f"{name} FAILED: {error!r}"[:2000], flush=True)
        return []


def run_notes(options: Options) -> dict[str, Any]:
    return {"repetitions": options.repetitions, "options": asdict(options)}


def save_partial(figures: list[Figure], facts: dict[str, Any]) -> None:
    """Figures so far, in case the run is cut short."""
    print(render_table(figures), flush=True)
    write_results(figures, {**facts, "partial": True})


async def run(infra: Infrastructure, options: Options, facts: dict[str, Any]) -> list[Figure]:
    catcher = Catcher(infra.smtp_api_url)
    try:
        baselines = await measure_baselines(infra, options, catcher)
        figures: list[Figure] = []
        if options.scenarios & SYSTEM_SCENARIOS:
            figures = await guarded(
                "system scenarios", run_system_scenarios(infra, options, catcher, baselines)
            )
            save_partial(figures, facts)
        if "notifier" in options.scenarios:
            figures.extend(await guarded("notifier", scenario_notifier(infra, options, catcher)))
            save_partial(figures, facts)
        if "audit" in options.scenarios:
            figures.extend(await guarded("audit", scenario_audit(infra, options)))
        return figures
    finally:
        catcher.close()


def main() -> None:
    options = parse_options()
    started = time.monotonic()
    with infrastructure() as infra:
        heal_local_broker(infra)
        facts = {**machine(infra.mongodb_url), **run_notes(options)}
        figures = asyncio.run(run(infra, options, facts))
    print()
    print(f"machine: {facts['cores']} cores, {facts['memory']} memory, {facts['platform']}")
    print(f"database: {facts['database']}; RabbitMQ {facts['rabbitmq']}; Python {facts['python']}")
    print(f"repetitions per figure: {options.repetitions} (median)")
    print(render_table(figures))
    written = write_results(figures, facts)
    print(f"\nwritten to {written} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
