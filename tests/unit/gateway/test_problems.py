"""Errors become problem+json answers: a broker between connections is a 503 to retry."""

from __future__ import annotations

import aiormq.exceptions
import pytest
from faststream.exceptions import IncorrectState
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from sotto_gateway.api.problems import EXCEPTION_HANDLERS, RETRY_AFTER_SECONDS

RAISED: dict[str, Exception] = {
    "channel-invalid-state": aiormq.exceptions.ChannelInvalidStateError("writer is None"),
    "incorrect-state": IncorrectState("You should connect broker first"),
    "amqp-connection": aiormq.exceptions.AMQPConnectionError("connection lost"),
}


@get("/raise/{name:str}", sync_to_thread=False)
def raising(name: FromPath[str]) -> None:
    raise RAISED[name]


@get("/fail", sync_to_thread=False)
def failing() -> None:
    raise RuntimeError("a bug")


app = Litestar([raising, failing], exception_handlers=EXCEPTION_HANDLERS)


@pytest.mark.parametrize("name", sorted(RAISED))
async def test_a_publish_during_a_broker_reconnect_answers_503_with_retry_after(name: str) -> None:
    async with AsyncTestClient(app) as client:
        answer = await client.get(f"/raise/{name}")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert answer.json()["code"] == "service_unavailable"


async def test_any_other_runtime_error_is_still_a_500() -> None:
    async with AsyncTestClient(app) as client:
        answer = await client.get("/fail")
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"
    assert "a bug" not in answer.text
