"""The Kubernetes manifests in deploy/kubernetes validate and keep the operational guarantees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from scripts import gen_docs

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
SERVICES = {"conversations": 2, "notifier": 3, "audit": 1, "portal-gateway": 2}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


DOCUMENTS = _documents()


def _find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize(
    ("file", "document"),
    DOCUMENTS,
    ids=[f"{file}:{d['kind']}/{d['metadata']['name']}" for file, d in DOCUMENTS],
)
def test_every_document_validates_against_the_kubernetes_schema(
    file: str, document: dict[str, Any]
) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    manifests = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_everything_lives_in_the_sotto_namespace() -> None:
    for _, document in DOCUMENTS:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "sotto", document["metadata"]["name"]


@pytest.mark.parametrize(("name", "replicas"), SERVICES.items())
def test_service_deployments_have_probes_resources_and_scrape_annotations(
    name: str, replicas: int
) -> None:
    deployment = _find("Deployment", name)
    assert deployment["spec"]["replicas"] == replicas
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    (container,) = pod["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    requests = container["resources"]["requests"]
    assert requests["cpu"]
    assert requests["memory"]
    assert container["resources"]["limits"]["memory"]
    assert _find("Service", name)["spec"]["selector"] == {"app.kubernetes.io/name": name}


def test_notifier_keeps_two_copies_through_disruptions() -> None:
    budget = _find("PodDisruptionBudget", "notifier")
    assert budget["spec"]["minAvailable"] == 2
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "notifier"}


def test_rabbitmq_is_a_three_node_cluster_with_quorum_queues_and_k8s_discovery() -> None:
    assert _find("StatefulSet", "rabbitmq")["spec"]["replicas"] == 3
    config = _find("ConfigMap", "rabbitmq-config")["data"]
    assert "rabbitmq_peer_discovery_k8s" in config["enabled_plugins"]
    assert "cluster_formation.peer_discovery_backend = k8s" in config["rabbitmq.conf"]
    assert "default_queue_type = quorum" in config["rabbitmq.conf"]


def test_mongodb_is_a_three_member_replica_set_initiated_by_a_job() -> None:
    statefulset = _find("StatefulSet", "mongodb")
    assert statefulset["spec"]["replicas"] == 3
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["--replSet", "rs0"]
    init = _find("ConfigMap", "mongodb-init")["data"]["init.js"]
    assert "rs.initiate" in init
    for member in range(3):
        assert f"mongodb-{member}" in _find("Secret", "sotto-secrets")["stringData"]["MONGODB_URL"]
    assert _find("Job", "mongodb-init")["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


def test_the_gateway_is_exposed_through_an_ingress_with_tls() -> None:
    ingress = _find("Ingress", "portal-gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "portal-gateway"
    assert ingress["spec"]["tls"]


def _settings_environment_variables() -> set[str]:
    names: set[str] = set()
    for settings_type in gen_docs.all_settings_classes():
        for name, field in settings_type.model_fields.items():
            names.update(gen_docs.environment_variable_names(settings_type, name, field))
    return names


def test_service_environment_names_only_settings_the_services_read() -> None:
    known = _settings_environment_variables()
    configured = set(_find("ConfigMap", "sotto-config")["data"])
    configured |= set(_find("Secret", "sotto-secrets")["stringData"])
    for name in SERVICES:
        (container,) = _find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        configured |= {variable["name"] for variable in container.get("env", [])}
    prefixes = {"CONVERSATIONS_", "GATEWAY_", "NOTIFIER_", "AUDIT_"}
    services_present = {
        settings_type.model_config.get("env_prefix")
        for settings_type in gen_docs.all_settings_classes()
    }
    unknown = {
        variable
        for variable in configured - known
        if not variable.startswith("OTEL_")
        and not any(variable.startswith(p) and p not in services_present for p in prefixes)
    }
    assert unknown == set()
