"""Publishing contract messages with publisher confirms, and request/reply over RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, TypeVar

import aio_pika
import msgspec
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPException
from faststream._internal.context import Context  # the class `faststream.Context()` returns
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from opentelemetry import propagate
from pydantic import BaseModel

from sotto_contracts.base import Message, Problem, Reply
from sotto_contracts.topology import Topology
from sotto_kit.deadlines import deadline_header

ResultT = TypeVar("ResultT", bound=BaseModel)


class _ContextOnTheLoop(Context):
    """FastStream's `Context`, resolved on the event loop.

    FastDepends runs a custom field's synchronous `use` in a worker thread, so every message
    whose handler took `RabbitMessage` made a thread round trip just to look the message up:
    a third of the audit consumer's CPU went to that hand-off. The lookup itself is a dict
    read; as a coroutine it runs in place."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved


IncomingMessage = Annotated[RabbitMessage, _ContextOnTheLoop("message")]
"""The delivery being handled, for handlers that need its headers, routing key or flags."""

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class Publisher:
    """Publishes contract messages persistently; confirms are awaited concurrently."""

    def __init__(self, broker: RabbitBroker, topology: Topology) -> None:
        self._broker = broker
        self._topology = topology

    async def publish(self, message: Message) -> None:
        await self.publish_raw(
            message.model_dump_json().encode(),
            exchange=self._topology.exchange_of(type(message)).name,
            routing_key=message.ROUTING_KEY,
            message_id=str(message.message_id),
        )

    async def publish_all(self, messages: Iterable[Message]) -> None:
        await asyncio.gather(*(self.publish(message) for message in messages))

    async def publish_raw(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        await self._broker.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            persist=True,
            mandatory=False,
            message_id=message_id,
            content_type="application/json",
            headers=headers,
        )


async def publish_once(url: str, topology: Topology, messages: Iterable[Message]) -> None:
    """Publish contract messages from a short-lived process (CLI, practice-system scripts)."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for message in messages:
            exchange = await channel.get_exchange(
                topology.exchange_of(type(message)).name, ensure=False
            )
            await exchange.publish(
                aio_pika.Message(
                    message.model_dump_json().encode(),
                    content_type="application/json",
                    message_id=str(message.message_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.ROUTING_KEY,
            )
    finally:
        await connection.close()


class RequestTimeoutError(TimeoutError):
    """No reply arrived in time (the service is down or overloaded)."""


class ProblemError(Exception):
    """The called service refused the request with a typed problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.code}: {problem.detail}")
        self.problem = problem


class RpcClient:
    """Concurrent request/reply with RabbitMQ direct reply-to and correlation ids.

    Uses a plain (not robust) connection and opens a new one on the next call after any
    broker failure: a direct reply-to consumer cannot survive a reconnect anyway.
    """

    def __init__(self, url: str, topology: Topology, *, timeout: float = 10.0) -> None:
        self._url = url
        self._topology = topology
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def _ensure_channel(self) -> aio_pika.abc.AbstractChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                await self._reset()
                self._connection = await aio_pika.connect(self._url, timeout=self._timeout)
                channel = await self._connection.channel(publisher_confirms=False)
                queue = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
                await queue.consume(self._on_reply, no_ack=True)
                self._channel = channel
            return self._channel

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, request: Message, *, timeout: float | None = None) -> Reply:
        return Reply.model_validate_json(await self._answer(request, timeout))

    async def _answer(self, request: Message, timeout: float | None) -> bytes:
        """The reply's body, as the answering service sent it."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            channel = await self._ensure_channel()
            exchange = await channel.get_exchange(
                self._topology.exchange_of(type(request)).name, ensure=False
            )
            wait = timeout or self._timeout
            headers: dict[str, Any] = deadline_header(wait)
            propagate.inject(headers)  # nothing unless a span is active (tracing on)
            await exchange.publish(
                aio_pika.Message(
                    request.model_dump_json().encode(),
                    content_type="application/json",
                    correlation_id=correlation_id,
                    message_id=str(request.message_id),
                    reply_to=DIRECT_REPLY_TO,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=headers,
                ),
                routing_key=request.ROUTING_KEY,
            )
            body = await asyncio.wait_for(future, wait)
        except TimeoutError as error:
            raise RequestTimeoutError(request.ROUTING_KEY) from error
        except (AMQPException, ConnectionError, RuntimeError, OSError) as error:
            async with self._lock:
                await self._reset()
            raise RequestTimeoutError(f"{request.ROUTING_KEY}: broker unavailable") from error
        finally:
            self._pending.pop(correlation_id, None)
        return body

    async def result_json(self, request: Message, *, timeout: float | None = None) -> bytes:
        """The result's JSON exactly as the answering service wrote it, or ProblemError.

        Only the envelope is read: a caller that passes the result on (the gateway serving a
        thread) never builds it as objects, and one that wants it typed parses it once."""
        return result_json_of(await self._answer(request, timeout), request.ROUTING_KEY)

    async def result(
        self, request: Message, result_type: type[ResultT], *, timeout: float | None = None
    ) -> ResultT:
        """Call and return the typed result, or raise ProblemError."""
        return result_type.model_validate_json(await self.result_json(request, timeout=timeout))

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


class _Envelope(msgspec.Struct):
    """A `Reply` read no further than `ok`: the result and problem stay raw JSON."""

    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    problem: msgspec.Raw = msgspec.Raw(b"null")


def result_json_of(reply: bytes, what: str) -> bytes:
    """The JSON of a reply's result, read no further than its envelope; ProblemError if the
    reply is a refusal or has no result (`what` names the request in that problem)."""
    envelope = msgspec.json.decode(reply, type=_Envelope)
    if not envelope.ok:
        problem = bytes(envelope.problem)
        raise ProblemError(
            Problem.model_validate_json(problem)
            if problem != b"null"
            else Problem(code="unknown", detail="no detail")
        )
    result = bytes(envelope.result)
    if result == b"null":
        raise ProblemError(Problem(code="no_result", detail=f"{what}: empty"))
    return result


def ok_json(result: BaseModel | Sequence[BaseModel] | None = None) -> bytes:
    """An ok `Reply` as JSON, the result serialized once by pydantic (building a `Reply` of the
    result's dicts and serializing that made three copies of a 50-message thread)."""
    if result is None:
        return b'{"ok":true,"result":null}'
    if isinstance(result, BaseModel):
        serialized = result.model_dump_json().encode()
    else:
        serialized = b"[" + b",".join(item.model_dump_json().encode() for item in result) + b"]"
    return b'{"ok":true,"result":' + serialized + b"}"


def refused(code: str, detail: str, status: int = 409) -> Reply:
    return Reply(ok=False, problem=Problem(code=code, detail=detail, status=status))
