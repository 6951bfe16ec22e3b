"""The RabbitMQ that `scripts/infra` starts has room for the quorum queues of many namespaces.

RabbitMQ 3.10 (Debian's package) sizes its file handle pool by the node's soft open-file limit,
which `su` sets to 1024, and each quorum queue reserves three handles: past about 300 quorum
queues every new connection waited forever. The script raises the soft limit to the hard one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.infra import Infrastructure

LIMIT_CAP = 65_536


def open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), LIMIT_CAP if hard == "unlimited" else int(hard)
    raise AssertionError(f"no open-file limit for process {pid}")


def test_the_local_broker_may_open_as_many_files_as_the_machine_allows(
    infra: Infrastructure,
) -> None:
    if not infra.local or not infra.rabbitmq_management_url:
        pytest.fail("this test checks the RabbitMQ node scripts/infra runs; run it against that")
    node = httpx.get(
        f"{infra.rabbitmq_management_url}/api/nodes", auth=("guest", "guest"), timeout=10
    ).json()[0]
    soft, hard = open_file_limits(int(node["os_pid"]))
    assert soft == min(hard, LIMIT_CAP)
    assert node["fd_total"] == soft
