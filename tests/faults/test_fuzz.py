"""Schemathesis over the gateway's OpenAPI against the real system: no 5xx answer.

The quick variant lives with the gateway (tests/integration/gateway/test_http_basics.py,
against stand-in services); this one runs at least 1,000 cases per endpoint.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Practice
from tests.e2e.portal import staff_token
from tests.faults.scoreboard import Scoreboard

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CASES_PER_ENDPOINT = 1000


@pytest.mark.soak
@pytest.mark.timeout(3 * 3600)
async def test_fuzzing_the_whole_api_finds_no_server_error(
    practice: Practice, scoreboard: Scoreboard
) -> None:
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "run",
        f"{practice.system.gateway_url}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(CASES_PER_ENDPOINT),
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {staff_token(practice.practice_id, 'staff-owner')}",
        "--seed",
        "7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    cases = sum(int(found) for found in re.findall(r"(\d+) generated", text)) or -1
    scoreboard.record(
        "schemathesis over the gateway API (real system)",
        f"0 server errors, {CASES_PER_ENDPOINT} cases per endpoint",
        {"exit code": process.returncode or 0, "cases reported": cases},
        met=process.returncode == 0,
    )
    assert process.returncode == 0, text[-4000:]
