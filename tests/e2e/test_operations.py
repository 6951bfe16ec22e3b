"""Issue 11: one message end to end shows on every metrics endpoint; the ops CLI works."""

from __future__ import annotations

import json
import os
import re
import subprocess

import httpx

from tests.e2e.conftest import Practice
from tests.e2e.test_secure_messaging import one_mail, open_conversation, secret_body
from tests.support.infra import REPO, Infrastructure
from tests.support.mail import MailCatcher

SOTTO = str(REPO / ".venv" / "bin" / "sotto")
SAMPLE = re.compile(r"^(sotto_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$")


def counters(exposition: str) -> dict[str, float]:
    """Sum of every sample per metric name."""
    totals: dict[str, float] = {}
    for line in exposition.splitlines():
        if found := SAMPLE.match(line):
            totals[found.group(1)] = totals.get(found.group(1), 0.0) + float(found.group(3))
    return totals


def sotto_cli(
    infra: Infrastructure, namespace: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RABBITMQ_URL": infra.rabbitmq_url, "SOTTO_NAMESPACE": namespace}
    if infra.rabbitmq_management_url:
        env["RABBITMQ_MANAGEMENT_URL"] = infra.rabbitmq_management_url
    return subprocess.run(
        [SOTTO, *args], env=env, capture_output=True, text=True, check=False, cwd=REPO
    )


async def test_metrics_count_one_message_end_to_end_and_the_cli_sees_it(
    practice: Practice, mail: MailCatcher, infra: Infrastructure
) -> None:
    async with practice.staff("staff-clinician") as clinician:
        await open_conversation(clinician, "client-alex", secret_body())
    await one_mail(mail, practice.email("alex"))

    async with httpx.AsyncClient(timeout=10) as http:
        for name, service in practice.system.services.items():
            totals = counters((await http.get(f"{service.url}/metrics")).text)
            assert totals.get("sotto_received_messages_total", 0) > 0, name
        gateway = counters((await http.get(f"{practice.system.gateway_url}/metrics")).text)
        assert gateway.get("sotto_http_requests_total", 0) > 0

    namespace = practice.system.namespace
    verified = sotto_cli(infra, namespace, "verify-audit", "--practice", practice.practice_id)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["valid"] is True

    depths = sotto_cli(infra, namespace, "queues")
    assert depths.returncode == 0, depths.stderr
    assert f"{namespace}.audit.events" in depths.stdout

    token = sotto_cli(
        infra, namespace, "token", "--practice", practice.practice_id, "--staff", "staff-owner"
    )
    assert token.returncode == 0, token.stderr
    minted = token.stdout.strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=practice.system.gateway_url) as http:
        me = await http.get("/api/staff/me", headers={"Authorization": f"Bearer {minted}"})
    assert me.status_code == 200
    assert me.json()["staff_id"] == "staff-owner"
