"""`sotto`: day-to-day operations from a shell. Reads RABBITMQ_URL and SOTTO_NAMESPACE."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from sotto_cli.demo import demo_practice
from sotto_contracts.audit import ChainVerification, VerifyChain
from sotto_contracts.base import Message
from sotto_contracts.registry import MESSAGES
from sotto_kit.messaging import RpcClient, publish_once
from sotto_kit.replay import list_parked, replay_parked
from sotto_kit.settings import ServiceSettings

app = typer.Typer(help="Operate a Sotto deployment.", no_args_is_help=True)
parking = typer.Typer(help="Inspect and replay parking queues.", no_args_is_help=True)
app.add_typer(parking, name="parking")

SERVICES = ("conversations", "portal-gateway", "gateway", "notifier", "audit")


def _settings() -> ServiceSettings:
    return ServiceSettings()


async def _publish(messages: list[Message]) -> None:
    settings = _settings()
    await publish_once(settings.rabbitmq_url, settings.topology, messages)


@app.command()
def token(
    practice: Annotated[str, typer.Option(help="Practice id")],
    staff: Annotated[str, typer.Option(help="Staff id")],
) -> None:
    """Mint a development staff token (signed with the gateway's development key)."""
    command = [sys.executable, "-m", "sotto_gateway", "mint-staff-token"]
    argv = [*command, "--practice", practice, "--staff", staff]
    result = subprocess.run(argv, check=False)  # noqa: S603 - fixed argv, no shell
    raise typer.Exit(result.returncode)


@app.command()
def seed(
    practice: Annotated[str, typer.Option(help="Practice id and portal slug")] = "demo",
    email_domain: Annotated[str, typer.Option(help="Domain of the demo addresses")] = (
        "example.org"
    ),
) -> None:
    """Publish a demo practice with staff and clients as practice-system events."""
    messages = demo_practice(practice, email_domain)
    asyncio.run(_publish(messages))
    typer.echo(f"published {len(messages)} events for practice {practice!r}")


@app.command()
def publish(
    routing_key: Annotated[str, typer.Argument(help="e.g. practice.statement_ready.v1")],
    file: Annotated[Path, typer.Argument(help="JSON body; '-' for standard input")],
) -> None:
    """Validate a JSON document against its contract and publish it."""
    if routing_key not in MESSAGES:
        typer.echo(f"unknown routing key {routing_key!r}", err=True)
        raise typer.Exit(2)
    raw = sys.stdin.read() if str(file) == "-" else file.read_text()
    message = MESSAGES[routing_key].model_validate_json(raw)
    asyncio.run(_publish([message]))
    typer.echo(f"published {routing_key} {message.message_id}")


@parking.command("list")
def parking_list(service: Annotated[str, typer.Argument(help="Service name")]) -> None:
    """Show what is parked and why (nothing is removed)."""
    settings = _settings()
    parked = asyncio.run(list_parked(settings.rabbitmq_url, settings.topology, service))
    for item in parked:
        typer.echo(f"{item.exchange} {item.routing_key}: {item.reason}")
    typer.echo(f"{len(parked)} parked")


@parking.command("replay")
def parking_replay(
    service: Annotated[str, typer.Argument(help="Service name")],
    limit: Annotated[int | None, typer.Option(help="Replay at most this many")] = None,
) -> None:
    """Republish parked messages to their original exchange and routing key."""
    settings = _settings()
    replayed = asyncio.run(
        replay_parked(settings.rabbitmq_url, settings.topology, service, limit=limit)
    )
    typer.echo(f"replayed {len(replayed)}")


@app.command("verify-audit")
def verify_audit(practice: Annotated[str, typer.Option(help="Practice id")]) -> None:
    """Ask the audit service to walk a practice's hash chain."""

    async def verify() -> ChainVerification:
        settings = _settings()
        client = RpcClient(settings.rabbitmq_url, settings.topology, timeout=60)
        try:
            return await client.result(VerifyChain(practice_id=practice), ChainVerification)
        finally:
            await client.close()

    result = asyncio.run(verify())
    typer.echo(result.model_dump_json(indent=2))
    raise typer.Exit(0 if result.valid else 1)


@app.command()
def queues(
    management_url: Annotated[str, typer.Option(envvar="RABBITMQ_MANAGEMENT_URL")] = (
        "http://127.0.0.1:15672"
    ),
    user: Annotated[str, typer.Option(envvar="RABBITMQ_USER")] = "guest",
    password: Annotated[str, typer.Option(envvar="RABBITMQ_PASSWORD")] = "guest",  # noqa: S107
) -> None:
    """Queue depths and consumers of this namespace (RabbitMQ management API)."""
    namespace = _settings().namespace
    response = httpx.get(f"{management_url}/api/queues", auth=(user, password), timeout=10)
    response.raise_for_status()
    rows: list[dict[str, Any]] = [
        q for q in response.json() if str(q.get("name", "")).startswith(f"{namespace}.")
    ]
    for row in sorted(rows, key=lambda q: str(q["name"])):
        typer.echo(
            f"{row['name']:<70} {row.get('messages', 0):>8} msgs {row.get('consumers', 0):>3} cons"
        )
    if os.environ.get("SOTTO_JSON"):
        typer.echo(json.dumps(rows))
