"""Where the test servers are: environment URLs, else the local scripts, else testcontainers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient

REPO = Path(__file__).resolve().parents[2]
INFRA_SCRIPT = REPO / "scripts" / "infra"


@dataclass(frozen=True)
class Infrastructure:
    rabbitmq_url: str
    mongodb_url: str
    smtp_host: str
    smtp_port: int
    smtp_api_url: str
    rabbitmq_management_url: str | None = None
    local: bool = True


def _from_environment() -> Infrastructure | None:
    names = ("RABBITMQ_URL", "MONGODB_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_CATCHER_URL")
    if not all(os.environ.get(name) for name in names):
        return None
    return Infrastructure(
        local="127.0.0.1" in os.environ["RABBITMQ_URL"],
        rabbitmq_url=os.environ["RABBITMQ_URL"],
        mongodb_url=os.environ["MONGODB_URL"],
        smtp_host=os.environ["SMTP_HOST"],
        smtp_port=int(os.environ["SMTP_PORT"]),
        smtp_api_url=os.environ["SMTP_CATCHER_URL"],
        rabbitmq_management_url=os.environ.get("RABBITMQ_MANAGEMENT_URL"),
    )


def _from_local_scripts() -> Infrastructure:
    subprocess.run([str(INFRA_SCRIPT), "up"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    output = subprocess.run(
        [str(INFRA_SCRIPT), "env"], check=True, cwd=REPO, capture_output=True, text=True
    ).stdout
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    os.environ.update(values)
    found = _from_environment()
    assert found is not None, f"scripts/infra env printed too little: {output}"
    return found


@contextmanager
def _from_containers() -> Iterator[Infrastructure]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with ExitStack() as stack:
        rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:4.1-management"))
        mongo = stack.enter_context(MongoDbContainer("mongo:7"))
        mailpit = DockerContainer("axllent/mailpit:v1.27.11").with_exposed_ports(1025, 8025)
        stack.enter_context(mailpit)
        wait_for_logs(mailpit, "accessible via")
        params = rabbit.get_connection_params()
        yield Infrastructure(
            rabbitmq_url=f"amqp://guest:guest@{params.host}:{params.port}/",
            mongodb_url=mongo.get_connection_url(),
            smtp_host=mailpit.get_container_host_ip(),
            smtp_port=int(mailpit.get_exposed_port(1025)),
            smtp_api_url=(
                f"http://{mailpit.get_container_host_ip()}:{mailpit.get_exposed_port(8025)}"
            ),
            local=False,
        )


@contextmanager
def infrastructure() -> Iterator[Infrastructure]:
    found = _from_environment()
    if found is not None:
        yield found
    elif os.environ.get("SOTTO_TEST_CONTAINERS") != "1" and (
        shutil.which("apt-get") or shutil.which("rabbitmq-server")
    ):
        yield _from_local_scripts()
    else:
        with _from_containers() as containers:
            yield containers


def broker_answers(url: str, timeout: float = 5.0) -> bool:
    """The broker starts an AMQP handshake, not merely accepts TCP."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout=timeout
        ) as conn:
            conn.settimeout(timeout)
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(1) == b"\x01"
    except OSError:
        return False


def heal_local_broker(found: Infrastructure) -> None:
    """A RabbitMQ that stops answering AMQP (3.10 did when quorum queues had reserved all of
    its file handles, before `scripts/infra` raised its open-file limit) is restarted."""
    if found.local and INFRA_SCRIPT.exists() and not broker_answers(found.rabbitmq_url):
        subprocess.run([str(INFRA_SCRIPT), "up"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def drop_namespace_databases(mongodb_url: str, namespaces: Iterable[str]) -> None:
    """Drop the databases (`<namespace>_...`) of these namespaces: left behind, thousands of them
    pile up in the local server's data directory, and FerretDB's database listing (which sizes
    every database) slows to seconds."""
    prefixes = tuple(f"{namespace}_" for namespace in namespaces)
    if not prefixes:
        return
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        for name in client.list_database_names():
            if name.startswith(prefixes):
                client.drop_database(name)
    finally:
        client.close()
