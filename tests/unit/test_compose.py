"""The compose file stays valid for users with Docker (it cannot run on CI machines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("conversations", "notifier", "audit", "portal-gateway")
INFRASTRUCTURE = ("rabbitmq", "mongodb", "mailpit")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_names_every_service_and_server(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*SERVICES, *INFRASTRUCTURE}


@pytest.mark.parametrize("name", [*SERVICES, *INFRASTRUCTURE])
def test_every_container_has_a_health_check(compose: dict[str, Any], name: str) -> None:
    assert compose["services"][name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", SERVICES)
def test_services_build_from_their_own_dockerfile_and_wait_for_healthy_infra(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    dockerfile = service["build"]["dockerfile"]
    assert dockerfile == f"services/{name}/Dockerfile"
    assert (REPO / dockerfile).is_file()
    conditions = {dep["condition"] for dep in service["depends_on"].values()}
    assert conditions == {"service_healthy"}
    assert {"rabbitmq", "mongodb"} <= set(service["depends_on"])


def test_notifier_can_be_scaled(compose: dict[str, Any]) -> None:
    notifier = compose["services"]["notifier"]
    assert "container_name" not in notifier, "a fixed name forbids --scale"
    assert "ports" not in notifier, "a fixed host port forbids --scale"


def test_mongodb_runs_as_a_replica_set(compose: dict[str, Any]) -> None:
    assert "--replSet" in compose["services"]["mongodb"]["command"]
    env = compose["services"]["conversations"]["environment"]
    assert "replicaSet=" in env["MONGODB_URL"]


def test_the_gateway_keeps_its_development_signing_key_in_a_volume_it_may_write(
    compose: dict[str, Any],
) -> None:
    """Without an identity provider the gateway generates a key pair in its state directory;
    the image runs as a non-root user in `/`, so the default relative directory is unwritable."""
    gateway = compose["services"]["portal-gateway"]
    state_dir = gateway["environment"]["GATEWAY_STATE_DIR"]
    assert any(volume.endswith(f":{state_dir}") for volume in gateway["volumes"])
    dockerfile = (REPO / "services/portal-gateway/Dockerfile").read_text()
    assert f"install -d -o sotto {state_dir}" in dockerfile
