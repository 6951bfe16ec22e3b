from __future__ import annotations

from faststream.asgi import AsgiFastStream

from sotto_audit import handlers
from sotto_audit.adapters.store import AuditStore
from sotto_audit.config import AuditSettings
from sotto_contracts.audit import GetAccessLog, GetDeliveryLog, VerifyChain
from sotto_kit.messaging import IncomingMessage, ok_json
from sotto_kit.runtime import create_runtime, worker_app

SERVICE = "audit"


def create_app(settings: AuditSettings | None = None) -> AsgiFastStream:
    settings = settings or AuditSettings()
    runtime = create_runtime(SERVICE, settings)
    checkpoint_key = (
        settings.checkpoint_key.get_secret_value().encode() if settings.checkpoint_key else None
    )
    store = AuditStore(runtime.database, head_key=checkpoint_key)
    recorder = handlers.BatchingRecorder(
        store,
        max_batch=settings.batch_max_events,
        linger_seconds=settings.batch_linger_ms / 1000,
    )
    topology = runtime.topology
    subscriber = runtime.broker.subscriber

    # One active consumer appends to the chains; other instances stand by and take over.
    events = topology.work_queue(SERVICE, "events", "#", single_active_consumer=True)

    @subscriber(events, topology.events)
    async def on_event(message: IncomingMessage) -> None:
        event = handlers.decode_event(message.raw_message.routing_key or "", message.body)
        await handlers.record_event(event, recorder)

    @subscriber(topology.queue_for(SERVICE, GetDeliveryLog), topology.commands)
    async def on_delivery_log(query: GetDeliveryLog) -> bytes:
        return ok_json(await handlers.delivery_log(query, store))

    @subscriber(topology.queue_for(SERVICE, GetAccessLog), topology.commands)
    async def on_access_log(query: GetAccessLog) -> bytes:
        return ok_json(await handlers.access_log(query, store))

    @subscriber(topology.queue_for(SERVICE, VerifyChain), topology.commands)
    async def on_verify_chain(query: VerifyChain) -> bytes:
        return ok_json(await handlers.verify_chain(store, query.practice_id, checkpoint_key))

    return worker_app(runtime, title="Sotto audit", on_startup=[store.ensure_indexes])
