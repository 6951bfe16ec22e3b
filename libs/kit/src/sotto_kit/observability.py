"""Prometheus metrics and optional OpenTelemetry tracing for a service.

Metrics: FastStream's Prometheus middleware (consumed/published messages per queue, handler
latency histograms) plus Sotto's own counters; services register theirs on `registry`.
Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then FastStream's telemetry
middleware propagates trace context across every RabbitMQ hop and exports by OTLP.
"""

from __future__ import annotations

import os
from typing import Any

from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.tracer_provider = tracer_provider_from_environment(service)
        self.registry = CollectorRegistry()
        self.parked = Counter(
            "sotto_messages_parked_total",
            "Messages moved to the parking queue, by routing key.",
            ["app_name", "routing_key"],
            registry=self.registry,
        )
        self.retried = Counter(
            "sotto_messages_retried_total",
            "Handler failures that sent a message back for redelivery.",
            ["app_name", "routing_key"],
            registry=self.registry,
        )
        self.expired = Counter(
            "sotto_requests_expired_total",
            "Requests dropped unanswered because their caller had stopped waiting.",
            ["app_name", "routing_key"],
            registry=self.registry,
        )
        self.parking_depth = Gauge(
            "sotto_parking_queue_depth",
            "Messages waiting in this service's parking queue.",
            ["app_name"],
            registry=self.registry,
        )

    def count_parked(self, routing_key: str) -> None:
        self.parked.labels(app_name=self.service, routing_key=routing_key).inc()

    def count_retried(self, routing_key: str) -> None:
        self.retried.labels(app_name=self.service, routing_key=routing_key).inc()

    def count_expired(self, routing_key: str) -> None:
        self.expired.labels(app_name=self.service, routing_key=routing_key).inc()

    def set_parking_depth(self, depth: int) -> None:
        self.parking_depth.labels(app_name=self.service).set(depth)

    def broker_middlewares(self) -> list[Any]:
        middlewares: list[Any] = [
            RabbitPrometheusMiddleware(
                registry=self.registry, app_name=self.service, metrics_prefix="sotto"
            )
        ]
        if self.tracer_provider is not None:
            middlewares.append(RabbitTelemetryMiddleware(tracer_provider=self.tracer_provider))
        return middlewares

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def tracer_provider_from_environment(service: str) -> Any | None:
    """An OTLP-exporting tracer provider when OTEL_EXPORTER_OTLP_ENDPOINT is set, else None."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"sotto-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
