"""Settings every service shares: where the broker and database are, and how to log."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sotto_contracts.topology import DEFAULT_DELIVERY_LIMIT, DEFAULT_NAMESPACE, Topology


def _shared(name: str) -> AliasChoices:
    """Infrastructure settings are read without the service prefix, so one env serves all."""
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """Base for each service's settings; subclasses set their own `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="SOTTO_", extra="ignore", populate_by_name=True)

    rabbitmq_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=_shared("RABBITMQ_URL"),
        description="AMQP URL of the RabbitMQ broker (or cluster load balancer).",
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/",
        validation_alias=_shared("MONGODB_URL"),
        description="MongoDB connection string; name the replica set in production.",
    )
    namespace: str = Field(
        default=DEFAULT_NAMESPACE,
        validation_alias=_shared("SOTTO_NAMESPACE"),
        pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$",
        description="Prefix of every exchange and queue name.",
    )
    delivery_limit: int = Field(
        default=DEFAULT_DELIVERY_LIMIT,
        ge=1,
        validation_alias=_shared("SOTTO_DELIVERY_LIMIT"),
        description="Deliveries of one message before it is parked.",
    )
    log_level: str = Field(
        default="INFO",
        validation_alias=_shared("LOG_LEVEL"),
        description="Python log level of the JSON logs.",
    )
    database: str = Field(default="sotto", description="This service's own database name.")
    prefetch: int = Field(default=32, ge=1, le=10_000, description="Unacked messages per consumer.")
    mongo_timeout_ms: int = Field(default=3000, ge=100, description="Server selection timeout.")
    outbox_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the outbox relay sweeps unpublished events."
    )

    @property
    def topology(self) -> Topology:
        return Topology(namespace=self.namespace, delivery_limit=self.delivery_limit)


class RelaySettings(ServiceSettings):
    """For services whose instances relay an outbox and look after what a departed peer left
    (`sotto_kit.outbox.OutboxRelay`, `sotto_kit.instances.Instances`)."""

    outbox_full_sweep_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Safety net: how often the outbox relay scans whole collections for unpublished "
            "events (a scan reads the whole collection on FerretDB). It also scans at start-up "
            "and when another instance departed."
        ),
    )
    instance_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often an instance records that it is alive."
    )
    instance_stale_after_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "An instance without a heartbeat for this long has departed (one that stops "
            "cleanly says so at once): a live one then looks for what it left (unpublished "
            "events, reminders only it knew of)."
        ),
    )
