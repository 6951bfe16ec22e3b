"""The standalone scenarios' repetitions: a broker that stops answering under one run (as
RabbitMQ 3.10 did, out of file handles) must cost that run, not the whole scenario or a hung
`make bench`."""

from __future__ import annotations

import pytest

from bench.__main__ import repetitions
from tests.support.infra import Infrastructure

ELSEWHERE = Infrastructure(
    rabbitmq_url="amqp://guest:guest@broker.invalid:5672/",
    mongodb_url="mongodb://db.invalid:27017/",
    smtp_host="smtp.invalid",
    smtp_port=1025,
    smtp_api_url="http://smtp.invalid:8025",
    local=False,  # not ours to restart: the broker check does nothing
)


class Flaky:
    def __init__(self, failures: set[int]) -> None:
        self.failures = failures
        self.calls = 0

    async def measure(self) -> float:
        self.calls += 1
        if self.calls in self.failures:
            raise TimeoutError
        return float(self.calls)


async def test_a_failed_repetition_is_tried_again_and_counted() -> None:
    flaky = Flaky(failures={2})
    runs, retried = await repetitions("audit", ELSEWHERE, 3, flaky.measure)
    assert runs == [1.0, 3.0, 4.0]
    assert retried == 1


async def test_a_repetition_that_fails_twice_fails_the_scenario() -> None:
    flaky = Flaky(failures={2, 3})
    with pytest.raises(TimeoutError):
        await repetitions("audit", ELSEWHERE, 3, flaky.measure)
