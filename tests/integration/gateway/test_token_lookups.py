"""Secure links, sign-in links and sessions are found by `_id`, derived from the token's
digest: on FerretDB's SQLite backend any other lookup reads the whole collection, so each link
opened and each client request would slow down as the practice's history grows. Lookups that
many handlers make at once go out together."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sotto_gateway.config import GatewaySettings
from sotto_gateway.main import create_app
from sotto_kit.mongo import COMMAND_LOG_ENV
from sotto_kit.outbox import OUTBOX_PENDING
from tests.integration.gateway.conftest import CLIENT_BIRTHDAY
from tests.integration.gateway.support import Broker, Watch, adopt_session
from tests.integration.gateway.test_links import CLIENT, SEND, issue_link, reminder
from tests.integration.gateway.test_sign_in_and_sessions import request_link
from tests.support.serving import serve

TOKEN_COLLECTIONS = {"links", "sign_in_links", "sessions"}


@pytest.fixture
def command_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "gateway-commands.jsonl"
    monkeypatch.setenv(COMMAND_LOG_ENV, str(log))
    return log


@pytest.fixture
async def base_url(command_log: Path, gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    async with serve(create_app(gateway_settings)) as url:
        yield url


def logged_commands(log: Path, database: str) -> list[dict[str, Any]]:
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    return [command for command in commands if command["db"] == database]


def token_lookups(log: Path, database: str) -> list[dict[str, Any]]:
    return [
        command
        for command in logged_commands(log, database)
        if command["collection"] in TOKEN_COLLECTIONS
        and command["command"] in ("find", "update", "findAndModify", "delete")
    ]


async def test_links_sign_ins_and_sessions_are_looked_up_by_id(
    broker: Broker,
    http: httpx.AsyncClient,
    world: dict[str, Any],
    notifications: Watch,
    command_log: Path,
    gateway_settings: GatewaySettings,
) -> None:
    token = await issue_link(broker, notifications)
    assert (await http.post(f"/api/client/links/{token}/open")).status_code == 200
    verified = await http.post(
        f"/api/client/links/{token}/verify", json={"date_of_birth": CLIENT_BIRTHDAY.isoformat()}
    )
    assert verified.status_code == 200, verified.text
    adopt_session(http, verified)
    assert (await http.get("/api/client/session")).status_code == 200

    sign_in_token = await request_link(http, notifications, "sam@example.org")
    assert (await http.post(f"/api/portal/sign-in/{sign_in_token}")).status_code == 200

    lookups = token_lookups(command_log, gateway_settings.database)
    looked_up = {command["collection"] for command in lookups}
    assert looked_up == TOKEN_COLLECTIONS
    # besides the outbox relay's sweep (at start-up, then every 30 s) and the replacement of a
    # recipient's earlier sign-in links (once per sign-in request), everything a link or a
    # session cookie does goes by `_id`
    by_other_fields = [
        command
        for command in lookups
        if "_id" not in command["filter"].split(",")
        and command["filter"] != OUTBOX_PENDING
        and command["collection"] != "sign_in_links"
    ]
    assert by_other_fields == []
    scans = [command for command in lookups if "_id" not in command["filter"].split(",")]
    assert {command["filter"] for command in scans} >= {
        OUTBOX_PENDING,
        "$or,practice_id,recipient_key",
    }
    assert all(command["time_limited"] for command in scans)
    assert all(
        "_id" in command["filter"].split(",")
        for command in lookups
        if command["command"] == "findAndModify"
    )


async def test_reminders_handled_together_check_for_removal_together(
    broker: Broker,
    world: dict[str, Any],
    notifications: Watch,
    command_log: Path,
    gateway_settings: GatewaySettings,
) -> None:
    """An announcement's reminders arrive in bursts; each is checked against removed messages
    before its link is minted and once more after. Those reads are batched by `_id`, so a
    burst costs a few finds, not two per reminder (on FerretDB, a third of a notice's
    database commands)."""
    reminders = [reminder(CLIENT, conversation_id=f"burst{index}") for index in range(20)]
    await asyncio.gather(*(broker.publish(event) for event in reminders))
    wanted = {f"reminder-{event.message_id.hex}" for event in reminders}
    await notifications.wait_for(
        SEND, where=lambda body: body["notification_id"] in wanted, count=len(wanted)
    )

    removal_checks = [
        command
        for command in logged_commands(command_log, gateway_settings.database)
        if command["collection"] == "removed_messages" and command["command"] == "find"
    ]
    assert removal_checks, "the removal checks were not logged"
    # Unbatched, every find would ask for one message. How many join one depends on how the
    # deliveries interleave, but the checks of a burst of 20 always overlap somewhere.
    assert max(command["ids"] for command in removal_checks) > 1
