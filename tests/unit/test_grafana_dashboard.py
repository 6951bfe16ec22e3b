"""The Grafana dashboard only charts metrics the services really expose on /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts import gen_docs
from sotto_audit.config import AuditSettings
from sotto_audit.main import create_app as create_audit_app
from sotto_contracts.gateway import SessionEnded
from tests.support.amqp import Amqp
from tests.support.serving import serve
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "sotto.json"
METRIC_NAME = re.compile(r"\b(sotto_[a-z0-9_]+)\b")
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}
CORE_METRICS = (
    "sotto_messages_parked_total",
    "sotto_messages_retried_total",
    "sotto_parking_queue_depth",
    "sotto_received_processed_messages_total",
    "sotto_received_processed_messages_duration_seconds_bucket",
    "sotto_published_messages_total",
)


def _sample_names(exposition: str) -> set[str]:
    """Every series name a scrape can hold, from its `# TYPE` lines and samples."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            base = family.removesuffix("_total")
            names.update(base + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


async def _scrape(app: Any) -> str | None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/metrics")
    return response.text if response.status_code == 200 else None


@pytest.fixture(scope="module")
async def exposed() -> dict[str, set[str]]:
    """Series names each service's /metrics exposes, scraped in process (no broker needed)."""
    scraped = {}
    for name, app in gen_docs.built_apps():
        exposition = await _scrape(app)
        if exposition is not None:
            scraped[name] = _sample_names(exposition)
    return scraped


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard) for target in panel["targets"]]


def test_every_panel_has_a_promql_target_on_the_chosen_datasource(
    dashboard: dict[str, Any],
) -> None:
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC_NAME.search(target["expr"]), (panel["title"], target["expr"])
        assert panel["datasource"]["uid"] == "${datasource}"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area


def test_every_charted_metric_is_exposed_by_a_service(
    dashboard: dict[str, Any], exposed: dict[str, set[str]]
) -> None:
    assert {"conversations", "audit"} <= set(exposed), "workers expose /metrics"
    known = set().union(*exposed.values())
    charted = {name for expr in _expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    assert charted - known == set()


def test_the_core_message_flow_and_dead_letter_metrics_are_charted(
    dashboard: dict[str, Any],
) -> None:
    charted = " ".join(_expressions(dashboard))
    for metric in CORE_METRICS:
        assert metric in charted


def test_every_query_selects_services_by_the_label_every_sotto_metric_carries(
    dashboard: dict[str, Any],
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "app_name" in variables["app_name"]["definition"]
    for expr in _expressions(dashboard):
        assert 'app_name=~"$app_name"' in expr or 'app_name="' in expr, expr


def _sample(exposition: str, name: str, labels: str) -> float | None:
    for line in exposition.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_running_worker_reports_parked_messages_the_way_the_dashboard_queries_them(
    make_settings: Callable[..., Any], amqp: Amqp
) -> None:
    """Integration: a real audit worker on the real broker parks a poison message."""
    settings: AuditSettings = make_settings(AuditSettings, "audit")
    routing_key = SessionEnded.ROUTING_KEY
    async with (
        serve(create_audit_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        await amqp.publish_raw(
            b"{not json", exchange=amqp.topology.events.name, routing_key=routing_key
        )

        async def scrape() -> str:
            return (await http.get("/metrics")).text

        parked_labels = f'app_name="audit",routing_key="{routing_key}"'
        exposition = await eventually(
            scrape,
            until=lambda text: (
                _sample(text, "sotto_messages_parked_total", parked_labels) == 1
                and _sample(text, "sotto_parking_queue_depth", 'app_name="audit"') == 1
            ),
            what="parked counter and parking queue depth",
        )
        assert 'sotto_received_processed_messages_total{app_name="audit"' in exposition
