"""The contracts package installs on its own and its README example publishes for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import aio_pika

from tests.support.amqp import Amqp
from tests.support.infra import REPO, Infrastructure
from tests.support.waiting import eventually

EXAMPLE = REPO / "contracts" / "examples" / "publish_from_practice_system.py"


def run(*argv: str, **options: object) -> str:
    result = subprocess.run(argv, check=True, capture_output=True, text=True, **options)  # type: ignore[call-overload]
    output: str = result.stdout
    return output


async def test_installs_alone_and_the_example_publishes(
    tmp_path: Path, infra: Infrastructure, amqp: Amqp
) -> None:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    venv = tmp_path / "practice-system"
    run(uv, "venv", "-q", "--python", "3.11", str(venv))
    python = venv / "bin" / "python"
    run(uv, "pip", "install", "-q", "--python", str(python), str(REPO / "contracts"))
    installed = run(uv, "pip", "list", "--python", str(python), "--format", "json")
    names = {package["name"] for package in json.loads(installed)}
    assert "sotto-contracts" in names
    assert not {"sotto-kit", "pymongo", "litestar", "aiosmtplib"} & names

    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    channel = await connection.channel()
    inbound = await channel.declare_exchange(
        amqp.topology.inbound.name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    probe = await channel.declare_queue(f"{amqp.topology.namespace}.probe", durable=True)
    await probe.bind(inbound, "practice.#")

    env = {**os.environ, "RABBITMQ_URL": infra.rabbitmq_url}
    env["SOTTO_NAMESPACE"] = amqp.topology.namespace
    run(str(python), str(EXAMPLE), env=env, cwd=tmp_path)

    async def received() -> list[str]:
        keys = []
        while (message := await probe.get(no_ack=True, fail=False)) is not None:
            keys.append(message.routing_key or "")
        return keys

    seen: list[str] = []

    async def all_seen() -> list[str]:
        seen.extend(await received())
        return seen

    await eventually(all_seen, until=lambda keys: len(keys) >= 2, what="example events")
    assert sorted(seen) == ["practice.appointment_requested.v1", "practice.statement_ready.v1"]
    await connection.close()
