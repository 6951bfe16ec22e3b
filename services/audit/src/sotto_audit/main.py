from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitMessage
from sotto_contracts.registry import message_type
from sotto_kit.parking import PoisonMessageError
from sotto_kit.runtime import create_runtime, worker_app

from sotto_audit import handlers
from sotto_audit.adapters.store import AuditStore
from sotto_audit.config import AuditSettings

SERVICE = "audit"


def create_app(settings: AuditSettings | None = None) -> AsgiFastStream:
    settings = settings or AuditSettings()
    runtime = create_runtime(SERVICE, settings)
    store = AuditStore(runtime.database)
    topology = runtime.topology

    @runtime.broker.subscriber(topology.work_queue(SERVICE, "events", "#"), topology.events)
    async def on_event(message: RabbitMessage) -> None:
        routing_key = message.raw_message.routing_key or ""
        try:
            contract = message_type(routing_key)
        except KeyError as error:
            raise PoisonMessageError(f"unknown routing key {routing_key!r}") from error
        event = contract.model_validate_json(message.body)
        await handlers.record_event(event, store)

    return worker_app(runtime, title="Sotto audit", on_startup=[store.ensure_indexes])
