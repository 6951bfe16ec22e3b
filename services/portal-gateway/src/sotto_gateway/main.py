"""Wiring of the portal gateway: Litestar app, broker subscribers, stores, RPC, outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from faststream.rabbit.subscriber import RabbitSubscriber
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from litestar import Litestar, Response, get
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import REGISTRY, Counter, Gauge, generate_latest
from pymongo.errors import PyMongoError

from sotto_contracts.base import Message
from sotto_contracts.conversations import (
    ClientEmailDue,
    MessageRemoved,
    MessagingEnablementChanged,
    UnreadReminderDue,
)
from sotto_contracts.inbound import (
    ClientUpserted,
    InquiryReceived,
    PracticeUpserted,
    StaffUpserted,
)
from sotto_gateway.adapters.rpc import Services
from sotto_gateway.adapters.sign_in_sends import SignInSends
from sotto_gateway.adapters.store import IdentityStore, LinkStore, OutboxWriter, SessionStore
from sotto_gateway.adapters.tokens import StaffTokenVerifier
from sotto_gateway.api.auth import SESSION_COOKIE
from sotto_gateway.api.client import ClientController
from sotto_gateway.api.middleware import (
    Admission,
    add_security_headers,
    header_limit_middleware,
    install_request_id_logging,
    request_id_middleware,
)
from sotto_gateway.api.portal import TOKEN_PARAMETER, SecureLinkController, SignInController
from sotto_gateway.api.problems import EXCEPTION_HANDLERS
from sotto_gateway.api.staff import staff_router
from sotto_gateway.api.state import Gateway
from sotto_gateway.config import GatewaySettings
from sotto_gateway.handlers import Portal
from sotto_gateway.pages import pages_router
from sotto_kit.instances import Instances
from sotto_kit.logs import configure_logging
from sotto_kit.messaging import RpcClient
from sotto_kit.observability import METRICS_CONTENT_TYPE, Metrics
from sotto_kit.outbox import OutboxRelay
from sotto_kit.runtime import Runtime, create_runtime, declare_topology

SERVICE = "gateway"
INDEX_RETRY_SECONDS = 2.0

logger = logging.getLogger(__name__)


def subscribe(runtime: Runtime, portal: Portal) -> None:
    broker, topology = runtime.broker, runtime.topology

    def queue(message_type: type[Message]) -> RabbitSubscriber:
        return broker.subscriber(
            topology.queue_for(SERVICE, message_type), topology.exchange_of(message_type)
        )

    @queue(PracticeUpserted)
    async def on_practice(event: PracticeUpserted) -> None:
        await portal.on_practice_upserted(event)

    @queue(ClientUpserted)
    async def on_client(event: ClientUpserted) -> None:
        await portal.on_client_upserted(event)

    @queue(InquiryReceived)
    async def on_inquiry(event: InquiryReceived) -> None:
        await portal.on_inquiry_received(event)

    @queue(StaffUpserted)
    async def on_staff(event: StaffUpserted) -> None:
        await portal.on_staff_upserted(event)

    @queue(MessagingEnablementChanged)
    async def on_enablement(event: MessagingEnablementChanged) -> None:
        await portal.on_messaging_enablement_changed(event)

    @queue(UnreadReminderDue)
    async def on_reminder(event: UnreadReminderDue) -> None:
        await portal.on_unread_reminder(event)

    @queue(ClientEmailDue)
    async def on_client_email(event: ClientEmailDue) -> None:
        await portal.on_client_email_due(event)

    @queue(MessageRemoved)
    async def on_removed(event: MessageRemoved) -> None:
        await portal.on_message_removed(event)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Sotto portal gateway",
        version="1.0.0",
        description=(
            "The HTTP API for Sotto's staff and client frontends. Errors are "
            "application/problem+json; 503 answers carry Retry-After."
        ),
        path="/schema",
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="http", scheme="bearer", bearer_format="JWT", description="Staff token"
                ),
                "SessionCookie": SecurityScheme(
                    type="apiKey",
                    name=SESSION_COOKIE,
                    security_scheme_in="cookie",
                    description="Client session; state-changing calls also need X-CSRF-Token.",
                ),
            }
        ),
    )


def _tracing(tracer_provider: Any | None) -> list[OpenTelemetryPlugin]:
    """HTTP server spans, continued across RabbitMQ hops, when OTLP export is configured."""
    if tracer_provider is None:
        return []
    config = OpenTelemetryConfig(tracer_provider=tracer_provider, exclude=["/metrics", "/health"])
    return [OpenTelemetryPlugin(config)]


def token_paths(app: Litestar) -> list[str]:
    """The route templates whose paths carry a link or sign-in token."""
    return [route.path_format for route in app.routes if TOKEN_PARAMETER in route.path_parameters]


def _admission(limit: int, metrics: Metrics) -> Admission:
    """The admission limit, with its count and its refusals on the metrics endpoint."""
    refused = Counter(
        "sotto_gateway_requests_refused_busy_total",
        "Requests answered 503 busy: the instance was answering max_requests_in_progress.",
        ["app_name"],
        registry=metrics.registry,
    ).labels(app_name=metrics.service)
    admission = Admission(limit, on_refused=refused.inc)
    Gauge(
        "sotto_gateway_requests_in_progress",
        "Requests this instance is answering, as max_requests_in_progress counts them.",
        ["app_name"],
        registry=metrics.registry,
    ).labels(app_name=metrics.service).set_function(lambda: admission.in_progress)
    return admission


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    settings = settings or GatewaySettings()
    configure_logging(SERVICE, settings.log_level)
    install_request_id_logging()
    runtime = create_runtime(SERVICE, settings)
    writer = OutboxWriter(runtime.topology, runtime.publisher)
    identity = IdentityStore(
        runtime.database, practice_cache_seconds=settings.settings_cache_seconds
    )
    links = LinkStore(runtime.database, writer)
    sessions = SessionStore(runtime.database, writer)
    sign_in_sends = SignInSends(
        runtime.database,
        settings.verification_hash_key.get_secret_value().encode(),
        settings.sign_in_emails_per_address,
        timedelta(minutes=settings.sign_in_address_period_minutes),
    )
    rpc = RpcClient(settings.rabbitmq_url, runtime.topology, timeout=settings.rpc_timeout_seconds)
    services = Services(rpc, settings_cache_seconds=settings.settings_cache_seconds)
    portal = Portal(settings, identity, links, sessions, services)
    instances = Instances.of_service(runtime.database, settings)
    relay = OutboxRelay(
        [*links.outbox_collections, sessions.sessions],
        runtime.publisher,
        interval_seconds=settings.outbox_interval_seconds,
        full_sweep_seconds=settings.outbox_full_sweep_seconds,
        instances=instances,
    )
    subscribe(runtime, portal)
    gateway = Gateway(
        settings=settings,
        portal=portal,
        services=services,
        verifier=StaffTokenVerifier(settings),
        publisher=runtime.publisher,
        limiter=MovingWindowRateLimiter(MemoryStorage()),
    )

    admission = _admission(settings.max_requests_in_progress, runtime.metrics)

    async def ensure_indexes() -> bool:
        try:
            for store in (identity, links, sessions, sign_in_sends):
                await store.ensure_indexes()
            await relay.ensure_indexes()
            await instances.ensure_collection()
        except PyMongoError:
            logger.warning("database unavailable for indexes; retrying")
            return False
        return True

    async def keep_trying_indexes() -> None:
        while True:
            await asyncio.sleep(INDEX_RETRY_SECONDS)
            if await ensure_indexes():
                return

    @asynccontextmanager
    async def lifespan(started: Litestar) -> AsyncIterator[None]:
        # again: uvicorn installs its own log handlers after the app is built
        configure_logging(SERVICE, settings.log_level, token_paths(started))
        install_request_id_logging()
        indexes = None if await ensure_indexes() else asyncio.create_task(keep_trying_indexes())
        await runtime.broker.connect()
        await declare_topology(runtime)
        await runtime.broker.start()
        runtime.consuming = True
        instances.start()
        relay.start()
        try:
            yield
        finally:
            runtime.consuming = False
            if indexes is not None:
                indexes.cancel()
            await relay.stop()
            with contextlib.suppress(Exception):
                await services.close()
            await runtime.broker.stop()
            await instances.stop()
            await runtime.mongo.close()

    @get("/health", tags=["operations"], summary="Broker and database reachability")
    async def health() -> Response[dict[str, Any]]:
        report = await runtime.health()
        return Response(report, status_code=200 if report["status"] == "ok" else 503)

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        await runtime.refresh_parking_depth()
        exposition = generate_latest(REGISTRY) + runtime.metrics.exposition()
        return Response(exposition, media_type=METRICS_CONTENT_TYPE)

    http_metrics = PrometheusConfig(
        app_name=SERVICE, prefix="sotto_http", group_path=True, exclude=["/metrics", "/health"]
    )

    app = Litestar(
        route_handlers=[
            health,
            metrics,
            staff_router,
            ClientController,
            SecureLinkController,
            SignInController,
            pages_router,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            header_limit_middleware,
            request_id_middleware,
            http_metrics.middleware,
            admission.middleware,
        ],
        plugins=_tracing(runtime.metrics.tracer_provider),
        logging_config=None,
        before_send=[add_security_headers],
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_request_bytes,
        debug=False,
    )
    app.state.gateway = gateway
    app.state.sign_in_sends = sign_in_sends
    app.state.broker = runtime.broker
    return app
