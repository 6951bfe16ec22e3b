"""Wiring every worker service shares: broker, database, publisher, parking, health, AsyncAPI."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker
from faststream.specification import AsyncAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from sotto_contracts.subscriptions import SUBSCRIPTIONS
from sotto_contracts.topology import Topology
from sotto_kit.deadlines import expired_requests_middleware
from sotto_kit.logs import configure_logging
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import Document, connect, is_reachable, wait_until_reachable
from sotto_kit.observability import METRICS_CONTENT_TYPE, Metrics
from sotto_kit.parking import DATABASE_WAIT_SECONDS, ConsumerStats, parking_middleware
from sotto_kit.settings import ServiceSettings

HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass
class Runtime:
    """Everything a service's handlers need from the outside world; built without I/O."""

    service: str
    settings: ServiceSettings
    broker: RabbitBroker
    mongo: AsyncMongoClient[Document]
    publisher: Publisher
    metrics: Metrics
    stats: ConsumerStats
    consuming: bool = False

    @property
    def topology(self) -> Topology:
        return self.settings.topology

    @property
    def database(self) -> AsyncDatabase[Document]:
        return self.mongo[self.settings.database]

    async def refresh_parking_depth(self) -> None:
        try:
            parking = await self.broker.declare_queue(self.topology.parking_queue(self.service))
            # the broker caches the queue object: declare again for a current message count
            result = await parking.declare(timeout=HEALTH_TIMEOUT_SECONDS)
        except Exception:  # broker away: keep the last known depth
            return
        self.metrics.set_parking_depth(result.message_count or 0)

    async def health(self) -> dict[str, Any]:
        broker_ok = await self.broker.ping(HEALTH_TIMEOUT_SECONDS)
        database_ok = await is_reachable(self.database)
        ready = broker_ok and database_ok and self.consuming
        return {
            "service": self.service,
            "status": "ok" if ready else ("starting" if not self.consuming else "unavailable"),
            "consuming": self.consuming,
            "broker": "ok" if broker_ok else "down",
            "database": "ok" if database_ok else "down",
            "messages": self.stats.as_dict(),
        }


def create_runtime(service: str, settings: ServiceSettings) -> Runtime:
    metrics = Metrics(service)
    stats = ConsumerStats(metrics)
    topology = settings.topology
    broker_holder: list[RabbitBroker] = []
    mongo = connect(settings.mongodb_url, timeout_ms=settings.mongo_timeout_ms)

    async def database_back() -> None:
        await wait_until_reachable(mongo[settings.database], DATABASE_WAIT_SECONDS)

    async def park(body: bytes, headers: dict[str, Any]) -> None:
        await broker_holder[0].publish(
            body,
            exchange=topology.dead_letter.name,
            routing_key=service,
            headers=headers,
            persist=True,
            mandatory=False,
            content_type="application/json",
        )

    async def send_reply(reply_to: str, correlation_id: str, body: bytes) -> None:
        await broker_holder[0].publish(
            body, routing_key=reply_to, correlation_id=correlation_id, mandatory=False
        )

    broker = RabbitBroker(
        settings.rabbitmq_url,
        default_channel=Channel(prefetch_count=settings.prefetch),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=[
            *metrics.broker_middlewares(),
            parking_middleware(service, topology, stats, park, send_reply, database_back),
            expired_requests_middleware(stats),
        ],
        graceful_timeout=15.0,
        fail_fast=False,
        reconnect_interval=1.0,
        logger=logging.getLogger(f"sotto.{service}.broker"),
    )
    broker_holder.append(broker)
    return Runtime(
        service=service,
        settings=settings,
        broker=broker,
        mongo=mongo,
        publisher=Publisher(broker, topology),
        metrics=metrics,
        stats=stats,
    )


async def declare_topology(runtime: Runtime) -> None:
    """The exchanges, and every service's queues and parking queue (`SUBSCRIPTIONS`), exist
    before this service consumes or publishes anything: a message for a service that has
    never run yet waits for it instead of being dropped."""
    topology, broker = runtime.topology, runtime.broker
    exchanges = {
        name: await broker.declare_exchange(topology.exchange(name))
        for name in ("events", "commands", "inbound")
    }
    dead_letter = await broker.declare_exchange(topology.dead_letter)
    for service in sorted({runtime.service, *(s.service for s in SUBSCRIPTIONS)}):
        parking = await broker.declare_queue(topology.parking_queue(service))
        await parking.bind(dead_letter, routing_key=service)
    for subscription in SUBSCRIPTIONS:
        queue = await broker.declare_queue(
            topology.work_queue(
                subscription.service,
                subscription.purpose,
                subscription.routing_key,
                single_active_consumer=subscription.single_active_consumer,
            )
        )
        await queue.bind(exchanges[subscription.exchange], routing_key=subscription.routing_key)


def _json(status: int, payload: dict[str, Any]) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(payload).encode(), status, headers={"content-type": "application/json"}
    )


def worker_app(
    runtime: Runtime,
    *,
    title: str,
    on_startup: Sequence[Callable[[], Any]] = (),
    after_startup: Sequence[Callable[[], Any]] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
    after_shutdown: Sequence[Callable[[], Any]] = (),
    extra_routes: Sequence[tuple[str, ASGIApp]] = (),
) -> AsgiFastStream:
    """An ASGI app running the broker, with `/health` and AsyncAPI docs at `/docs/asyncapi`."""
    configure_logging(runtime.service, runtime.settings.log_level)

    @get
    async def health(scope: Scope) -> AsgiResponse:
        report = await runtime.health()
        return _json(200 if report["status"] == "ok" else 503, report)

    @get
    async def metrics(scope: Scope) -> AsgiResponse:
        await runtime.refresh_parking_depth()
        return AsgiResponse(
            runtime.metrics.exposition(), 200, headers={"content-type": METRICS_CONTENT_TYPE}
        )

    async def prepare() -> None:
        # again: servers (uvicorn) install their own log handlers after the app is built
        configure_logging(runtime.service, runtime.settings.log_level)
        await runtime.broker.connect()
        await declare_topology(runtime)

    async def close_database() -> None:
        await runtime.mongo.close()

    async def mark_consuming() -> None:
        runtime.consuming = True

    async def mark_stopping() -> None:
        runtime.consuming = False

    return AsgiFastStream(
        runtime.broker,
        asgi_routes=[("/health", health), ("/metrics", metrics), *extra_routes],
        specification=AsyncAPI(runtime.broker, title=title, version="1.0.0"),
        asyncapi_path="/docs/asyncapi",
        on_startup=[prepare, *on_startup],
        after_startup=[*after_startup, mark_consuming],
        on_shutdown=[mark_stopping, *on_shutdown],
        after_shutdown=[*after_shutdown, close_database],
    )
