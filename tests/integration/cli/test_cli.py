"""The `sotto` command against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sotto_contracts.inbound import StatementReady
from sotto_contracts.topology import Topology
from tests.support.amqp import Amqp
from tests.support.infra import REPO, Infrastructure
from tests.support.waiting import eventually

SOTTO = str(REPO / ".venv" / "bin" / "sotto")


def run_cli(infra: Infrastructure, namespace: str, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "RABBITMQ_URL": infra.rabbitmq_url, "SOTTO_NAMESPACE": namespace}
    result = subprocess.run(
        [SOTTO, *args], env=env, input=stdin, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.fixture
async def inbound_queue(amqp: Amqp, topology: Topology) -> str:
    """A queue that catches every inbound event of this test's namespace."""
    import aio_pika

    connection = await aio_pika.connect_robust(amqp.url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        topology.inbound.name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(f"{topology.namespace}.cli-probe", durable=True)
    await queue.bind(exchange, "#")
    await connection.close()
    return queue.name


async def _drain(url: str, queue_name: str) -> list[dict[str, object]]:
    import aio_pika

    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        bodies = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.append(json.loads(message.body))
        return bodies
    finally:
        await connection.close()


async def test_seed_publishes_a_demo_practice(
    infra: Infrastructure, namespace: str, inbound_queue: str
) -> None:
    output = run_cli(infra, namespace, "seed", "--practice", "demo-clinic")
    assert "published" in output
    bodies = await eventually(
        lambda: _drain(infra.rabbitmq_url, inbound_queue), until=lambda b: len(b) >= 6
    )
    assert {body["practice_id"] for body in bodies} == {"demo-clinic"}


async def test_publish_validates_against_the_contract(
    infra: Infrastructure, namespace: str, inbound_queue: str, tmp_path: Path
) -> None:
    event = StatementReady(practice_id="p1", client_id="c1", reference_id="st-1")
    run_cli(infra, namespace, "publish", event.ROUTING_KEY, "-", stdin=event.model_dump_json())
    bodies = await eventually(lambda: _drain(infra.rabbitmq_url, inbound_queue))
    assert bodies[0]["message_id"] == str(event.message_id)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"practice_id": "p1"}))
    with pytest.raises(subprocess.CalledProcessError):
        run_cli(infra, namespace, "publish", event.ROUTING_KEY, str(bad))


async def test_parking_list_and_replay(
    infra: Infrastructure, namespace: str, amqp: Amqp, topology: Topology
) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    channel = await connection.channel()
    dlx = await channel.declare_exchange(
        topology.dead_letter.name, aio_pika.ExchangeType.DIRECT, durable=True
    )
    parking = await channel.declare_queue(
        topology.parking_queue("svc").name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await parking.bind(dlx, "svc")
    target = await channel.declare_queue(f"{namespace}.replay-target", durable=True)
    await dlx.publish(
        aio_pika.Message(
            b'{"x": 1}',
            headers={
                "x-parking-reason": "invalid message: x",
                "x-original-exchange": "",
                "x-original-routing-key": target.name,
            },
        ),
        routing_key="svc",
    )
    await connection.close()

    async def listing() -> str:
        return run_cli(infra, namespace, "parking", "list", "svc")

    assert "invalid message: x" in await eventually(listing, until=lambda o: "1 parked" in o)
    assert "replayed 1" in run_cli(infra, namespace, "parking", "replay", "svc")
    assert await amqp.parked("svc") == []
    replayed = await eventually(lambda: _drain(infra.rabbitmq_url, target.name))
    assert replayed == [{"x": 1}]
