from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sotto_contracts.topology import Topology
from sotto_notifier.config import NotifierSettings
from tests.integration.notifier.support import EventTap
from tests.support.infra import Infrastructure


@pytest.fixture
def notifier_settings(
    make_settings: Callable[..., Any], infra: Infrastructure
) -> Callable[..., NotifierSettings]:
    def build(**overrides: Any) -> NotifierSettings:
        values: dict[str, Any] = {
            "smtp_host": infra.smtp_host,
            "smtp_port": infra.smtp_port,
            "smtp_tls": "none",
            "rate_per_second": 1000.0,
            "burst": 100,
            "retry_delays_seconds": [1, 1],
            "sweep_interval_seconds": 0.5,
            "address_hash_key": "test-key",
            **overrides,
        }
        settings: NotifierSettings = make_settings(NotifierSettings, "notifier", **values)
        return settings

    return build


@pytest.fixture
async def events(infra: Infrastructure, topology: Topology) -> AsyncIterator[EventTap]:
    tap = EventTap(infra.rabbitmq_url, topology)
    await tap.start()
    yield tap
    await tap.close()
