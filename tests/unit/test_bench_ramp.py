"""The e2e benchmark's rate search: it must find what a system sustains wherever its steps
start, so `make bench` reports a figure on slow and fast machines alike."""

from __future__ import annotations

from bench.e2e import Ramp, Step, ramp

P99_LIMIT_MS = 250.0


class FakeSystem:
    """Delivers everything offered up to `capacity` per second, with p99 over the limit
    beyond it."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.offered: list[float] = []

    async def measure(self, rate: float) -> Step:
        self.offered.append(rate)
        keeps_up = rate <= self.capacity
        messages = max(1, int(rate * 4))
        return Step(
            offered_per_second=rate,
            messages=messages,
            accepted_posts=messages,
            delivered=messages,
            delivered_per_second=rate if keeps_up else self.capacity,
            p50_ms=40.0 if keeps_up else 900.0,
            p99_ms=80.0 if keeps_up else 2_000.0,
        )


async def search(capacity: float, rates: list[float]) -> tuple[Ramp, FakeSystem]:
    system = FakeSystem(capacity)
    return await ramp(system.measure, rates, P99_LIMIT_MS), system


async def test_a_slow_system_gets_a_figure_when_the_first_step_already_fails() -> None:
    result, system = await search(22.0, [50.0, 100.0, 200.0])

    best = result.best(P99_LIMIT_MS)
    assert best is not None
    assert 18.0 <= best.offered_per_second <= 22.0
    assert system.offered[:3] == [50.0, 25.0, 12.5]
    limit = result.limit(P99_LIMIT_MS)
    assert limit is not None
    assert best.offered_per_second < limit <= 25.0


async def test_a_fast_system_is_raised_through_the_steps_then_narrowed() -> None:
    result, system = await search(150.0, [50.0, 100.0, 200.0, 300.0])

    assert system.offered[:3] == [50.0, 100.0, 200.0]
    assert 300.0 not in system.offered
    best = result.best(P99_LIMIT_MS)
    assert best is not None
    assert best.offered_per_second == 150.0
    assert result.limit(P99_LIMIT_MS) == 175.0


async def test_a_system_that_keeps_up_with_every_step_has_no_limit() -> None:
    result, system = await search(1_000.0, [50.0, 100.0])

    assert system.offered == [50.0, 100.0]
    best = result.best(P99_LIMIT_MS)
    assert best is not None
    assert best.offered_per_second == 100.0
    assert result.limit(P99_LIMIT_MS) is None


async def test_halving_stops_at_the_lowest_rate_worth_measuring() -> None:
    result, system = await search(0.5, [50.0])

    assert result.best(P99_LIMIT_MS) is None
    assert min(system.offered) >= 2.0
    assert system.offered == [50.0, 25.0, 12.5, 6.25, 3.125]
