from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream.asgi import AsgiFastStream
from pydantic import BaseModel

from sotto_contracts import conversations as contract
from sotto_contracts import inbound
from sotto_contracts.base import Command, Message, utc_now
from sotto_conversations.adapters.announcements import AnnouncementSender
from sotto_conversations.adapters.reminders import ReminderScheduler
from sotto_conversations.adapters.store import ConversationStore
from sotto_conversations.config import ConversationsSettings
from sotto_conversations.domain import RefusalError
from sotto_conversations.handlers import Conversations, reminder_event
from sotto_kit.instances import Instances
from sotto_kit.messaging import IncomingMessage, ok_json, refused
from sotto_kit.outbox import OutboxRelay
from sotto_kit.parking import PoisonMessageError
from sotto_kit.runtime import Runtime, create_runtime, worker_app

SERVICE = "conversations"

Answer = Callable[[Any], Awaitable[BaseModel | list[Any] | None]]
Consume = Callable[[Any], Awaitable[None]]
T = TypeVar("T")


def _answer_requests(
    runtime: Runtime, store: ConversationStore, answers: dict[type[Message], Answer]
) -> None:
    """One queue for every request and query; the routing key picks the contract."""
    by_key = {
        message_type.ROUTING_KEY: (message_type, handle) for message_type, handle in answers.items()
    }
    topology = runtime.topology

    @runtime.broker.subscriber(
        topology.work_queue(SERVICE, "requests", f"{SERVICE}.*.v1"), topology.commands
    )
    async def answer(message: IncomingMessage) -> bytes:
        message_type, handle = _route(by_key, message)
        request = message_type.model_validate_json(message.body)
        is_command = isinstance(request, Command)
        if is_command and (stored := await store.handled_reply(str(request.message_id))):
            return stored.encode()
        try:
            reply = ok_json(await handle(request))
        except RefusalError as refusal:
            reply = refused(refusal.code, refusal.detail, refusal.status).model_dump_json().encode()
        if is_command:
            await store.remember_reply(str(request.message_id), reply.decode())
        return reply


def _consume_inbound(runtime: Runtime, consumers: dict[type[Message], Consume]) -> None:
    by_key = {
        message_type.ROUTING_KEY: (message_type, handle)
        for message_type, handle in consumers.items()
    }
    topology = runtime.topology

    @runtime.broker.subscriber(
        topology.work_queue(SERVICE, "inbound", "practice.#"), topology.inbound
    )
    async def consume(message: IncomingMessage) -> None:
        message_type, handle = _route(by_key, message)
        await handle(message_type.model_validate_json(message.body))


def _route(
    by_key: dict[str, tuple[type[Message], T]], message: IncomingMessage
) -> tuple[type[Message], T]:
    routing_key = message.raw_message.routing_key or ""
    try:
        return by_key[routing_key]
    except KeyError as error:
        raise PoisonMessageError(f"unknown routing key {routing_key!r}") from error


def create_app(settings: ConversationsSettings | None = None) -> AsgiFastStream:
    settings = settings or ConversationsSettings()
    runtime = create_runtime(SERVICE, settings)
    store = ConversationStore(
        runtime.database,
        runtime.topology,
        runtime.publisher,
        crash_after_write=settings.fault_crash_after_write,
    )
    service = Conversations(store)
    instances = Instances.of_service(runtime.database, settings)
    relay = OutboxRelay(
        store.outbox_collections,
        runtime.publisher,
        interval_seconds=settings.outbox_interval_seconds,
        full_sweep_seconds=settings.outbox_full_sweep_seconds,
        instances=instances,
    )
    scheduler = ReminderScheduler(
        store,
        reminder_event,
        utc_now,
        interval_seconds=settings.reminder_poll_seconds,
        scan_seconds=settings.reminder_scan_seconds,
        instances=instances,
    )
    announcements = AnnouncementSender(
        store,
        service.send_announcement_batch,
        utc_now,
        batch_size=settings.announcement_batch_size,
        lease_seconds=settings.announcement_lease_seconds,
        poll_seconds=settings.announcement_poll_seconds,
        scan_seconds=settings.announcement_scan_seconds,
    )

    answers: dict[type[Message], Answer] = {
        contract.OpenConversation: service.open_conversation,
        contract.PostMessage: service.post_message,
        contract.MarkRead: service.mark_read,
        contract.MarkUnread: service.mark_unread,
        contract.RemoveMessage: service.remove_message,
        contract.AssignConversation: service.assign,
        contract.SetArchived: service.set_archived,
        contract.AddNote: service.add_note,
        contract.CreateTask: service.create_task,
        contract.UpdateTask: service.update_task,
        contract.UpdateSettings: service.update_settings,
        contract.SetMessagingEnabled: service.set_messaging_enabled,
        contract.SendAnnouncement: service.send_announcement,
        contract.GetAnnouncement: service.get_announcement,
        contract.GetInbox: service.get_inbox,
        contract.GetThread: service.get_thread,
        contract.ListClientConversations: service.list_client_conversations,
        contract.CopyMessages: service.copy_messages,
        contract.GetTranscript: service.get_transcript,
        contract.ExportPractice: service.export_practice,
        contract.GetSettings: service.get_settings,
    }
    _answer_requests(runtime, store, answers)

    consumers: dict[type[Message], Consume] = {
        inbound.PracticeUpserted: service.practice_upserted,
        inbound.ClientUpserted: service.client_upserted,
        inbound.StaffUpserted: service.staff_upserted,
        inbound.AppointmentRequested: service.appointment_requested,
        inbound.InquiryReceived: service.inquiry_received,
        **dict.fromkeys(inbound.CLIENT_EMAIL_WORKFLOW_EVENTS, service.client_email_workflow),
    }
    _consume_inbound(runtime, consumers)

    async def prepare() -> None:
        await store.ensure_indexes()
        await relay.ensure_indexes()
        await instances.ensure_collection()

    async def start_background() -> None:
        instances.start()
        relay.start()
        scheduler.start()
        announcements.start()

    async def stop_background() -> None:
        await announcements.stop()
        await scheduler.stop()
        await relay.stop()

    return worker_app(
        runtime,
        title="Sotto conversations",
        on_startup=[prepare],
        after_startup=[start_background],
        on_shutdown=[stop_background],
        after_shutdown=[instances.stop],
    )
