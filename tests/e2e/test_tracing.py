"""With OTLP export configured, one staff message is one trace across all four services."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Request, Response, get, post
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import OUTPUT, Practice
from tests.e2e.test_secure_messaging import one_mail, open_conversation, secret_body
from tests.support.infra import Infrastructure
from tests.support.mail import MailCatcher
from tests.support.serving import serve
from tests.support.system import RunningSystem, running_system
from tests.support.waiting import eventually

SERVICES = {"sotto-gateway", "sotto-conversations", "sotto-notifier", "sotto-audit"}


class Collector:
    """A minimal OTLP/HTTP trace receiver: which services took part in each trace."""

    def __init__(self) -> None:
        self.services_by_trace: dict[str, set[str]] = defaultdict(set)
        self.span_names_by_trace: dict[str, list[str]] = defaultdict(list)

    def app(self) -> Litestar:
        @post("/v1/traces", status_code=200)
        async def receive(request: Request[Any, Any, Any]) -> Response[bytes]:
            export = ExportTraceServiceRequest.FromString(await request.body())
            for resource_spans in export.resource_spans:
                service = next(
                    attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                    if attribute.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        trace_id = span.trace_id.hex()
                        self.services_by_trace[trace_id].add(service)
                        self.span_names_by_trace[trace_id].append(f"{service}: {span.name}")
            return Response(
                ExportTraceServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        @get("/health")
        async def health() -> str:
            return "ok"

        return Litestar(route_handlers=[receive, health])

    def services_in_trace_of(self, span_name: str) -> set[str]:
        """The services that took part in the trace holding a span named `span_name`."""
        for trace_id, names in self.span_names_by_trace.items():
            if span_name in names:
                return self.services_by_trace[trace_id]
        return set()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    receiver = Collector()
    async with serve(receiver.app()) as url:
        yield receiver, url


@pytest.fixture
async def system(
    infra: Infrastructure,
    namespace: str,
    request: pytest.FixtureRequest,
    collector: tuple[Collector, str],
) -> AsyncIterator[RunningSystem]:
    _, url = collector
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    async with running_system(infra, namespace, OUTPUT / request.node.name, env=tracing) as system:
        yield system


async def test_one_message_is_one_trace_from_the_staff_post_to_audit(
    practice: Practice, mail: MailCatcher, collector: tuple[Collector, str]
) -> None:
    receiver, _ = collector
    async with practice.staff("staff-clinician") as clinician:
        await open_conversation(clinician, "client-alex", secret_body())
    await one_mail(mail, practice.email("alex"))

    async def services_in_the_posts_trace() -> set[str]:
        return receiver.services_in_trace_of("sotto-gateway: POST /api/staff/conversations")

    await eventually(
        services_in_the_posts_trace,
        until=lambda found: found >= SERVICES,
        what="the staff POST's trace reaching conversations, gateway, notifier and audit",
    )
