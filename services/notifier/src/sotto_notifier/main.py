from __future__ import annotations

from datetime import timedelta

from aiolimiter import AsyncLimiter
from faststream.asgi import AsgiFastStream

from sotto_contracts.notifier import SendNotification
from sotto_kit.messaging import IncomingMessage
from sotto_kit.periodic import Periodic
from sotto_kit.runtime import create_runtime, worker_app
from sotto_notifier.adapters.retries import DelayedRetries
from sotto_notifier.adapters.smtp import SmtpPool
from sotto_notifier.adapters.store import DeliveryStore
from sotto_notifier.config import NotifierSettings
from sotto_notifier.handlers import NotificationSender, SendingPolicy
from sotto_notifier.rendering import TemplateCatalogue

SERVICE = "notifier"


def create_app(settings: NotifierSettings | None = None) -> AsgiFastStream:
    settings = settings or NotifierSettings()
    runtime = create_runtime(SERVICE, settings)
    topology = runtime.topology
    store = DeliveryStore(runtime.database, topology, runtime.publisher)
    pool = SmtpPool(settings)
    retries = DelayedRetries(runtime.broker, topology, SERVICE, settings.retry_delays_seconds)
    sender = NotificationSender(
        deliveries=store,
        mailer=pool,
        retries=retries,
        rate_limit=AsyncLimiter(settings.burst, settings.burst / settings.rate_per_second),
        catalogue=TemplateCatalogue(),
        policy=SendingPolicy(
            from_address=settings.from_address,
            neutral_sender_name=settings.neutral_sender_name,
            retry_delays_seconds=settings.retry_delays_seconds,
            address_hash_key=(
                settings.address_hash_key.get_secret_value().encode()
                if settings.address_hash_key
                else None
            ),
            stale_sending_after=timedelta(seconds=settings.stale_sending_seconds),
        ),
    )
    # Events left in a record's outbox always belong to a window still open (see the store), so
    # sweeping the small windows collection replaces the outbox relay, whose query would scan
    # the whole deliveries collection on FerretDB.
    window_sweep = Periodic(
        "send-window-sweep",
        sender.sweep_windows,
        min(settings.sweep_interval_seconds, settings.outbox_interval_seconds),
    )

    @runtime.broker.subscriber(
        topology.queue_for(SERVICE, SendNotification), topology.exchange_of(SendNotification)
    )
    async def on_send_notification(command: SendNotification, message: IncomingMessage) -> None:
        await sender.handle(command, redelivered=bool(message.raw_message.redelivered))

    async def start_background_work() -> None:
        # Sync hooks run in a worker thread; starting tasks needs the event loop's thread.
        window_sweep.start()

    return worker_app(
        runtime,
        title="Sotto notifier",
        on_startup=[store.ensure_indexes, retries.declare],
        after_startup=[start_background_work],
        on_shutdown=[window_sweep.stop, pool.close],
    )
