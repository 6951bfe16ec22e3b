"""The SMTP connection against a scripted local relay: which failures leave it unknown whether
the relay took the message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import pytest
from pydantic import SecretStr

from sotto_notifier.adapters.smtp import SmtpConnection
from sotto_notifier.config import NotifierSettings, SmtpTlsMode
from sotto_notifier.domain import SmtpOutcome
from tests.support.serving import free_port

Stage = Literal["greeting", "EHLO", "AUTH", "MAIL", "RCPT", "end of data"]
Failure = Literal["refuse", "hang up", "fall silent"]
MESSAGE = b"Subject: hello\r\n\r\nA link.\r\n"


class Relay:
    """Answers every command with success, except `stage`, where it fails as `failure` says."""

    def __init__(self, stage: Stage, failure: Failure, *, times: int = 1, after: int = 0) -> None:
        self._stage = stage
        self._failure = failure
        self._failures_left = times
        self._passes_left = after
        self.messages: list[bytes] = []
        self._connections: list[tuple[asyncio.StreamWriter, asyncio.Task[None]]] = []

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for writer, _ in self._connections:
                writer.close()
            server.close()
            await asyncio.gather(*(task for _, task in self._connections))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.append((writer, task))
        if self._fails("greeting"):
            writer.write(b"554 5.3.2 no service here\r\n")
            writer.close()
            return
        writer.write(b"220 relay ESMTP\r\n")
        while line := await reader.readline():
            stage = line[:4].decode().upper().replace("HELO", "EHLO")
            if stage == "QUIT":
                writer.write(b"221 bye\r\n")
                break
            if stage == "DATA":
                writer.write(b"354 go ahead\r\n")
                self.messages.append((await reader.readuntil(b"\r\n.\r\n"))[:-3])
                stage = "end of data"
            if self._fails(stage):
                if self._failure == "hang up":
                    break
                if self._failure == "refuse":
                    writer.write(
                        b"535 5.7.8 authentication failed\r\n"
                        if stage == "AUTH"
                        else b"451 4.3.0 try again later\r\n"
                    )
                continue
            if stage == "EHLO":
                writer.write(b"250-relay\r\n250 AUTH PLAIN\r\n")
            elif stage == "AUTH":
                writer.write(b"235 2.7.0 authenticated\r\n")
            else:
                writer.write(b"250 OK\r\n")
        writer.close()

    def _fails(self, stage: str) -> bool:
        if stage != self._stage or self._failures_left == 0:
            return False
        if self._passes_left > 0:
            self._passes_left -= 1
            return False
        self._failures_left -= 1
        return True


def connection_to(port: int, *, tls: SmtpTlsMode = SmtpTlsMode.NONE) -> SmtpConnection:
    return SmtpConnection(
        NotifierSettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_tls=tls,
            require_tls=tls is not SmtpTlsMode.NONE,
            smtp_username="notifier",
            smtp_password=SecretStr("secret"),
            smtp_timeout_seconds=0.5,
        )
    )


async def send(connection: SmtpConnection) -> SmtpOutcome:
    refusal = await connection.envelope(
        sender="no-reply@sotto.example", recipient="client@example.org"
    )
    return await connection.hand_over(MESSAGE) if refusal is None else refusal


@pytest.mark.parametrize("failure", ["hang up", "fall silent"])
async def test_no_reply_after_the_message_was_handed_over_is_an_unknown_outcome(
    failure: Failure,
) -> None:
    relay = Relay("end of data", failure)
    async with relay.serving() as port:
        outcome = await send(connection_to(port))
    assert len(relay.messages) == 1
    assert outcome.status == "unknown"
    assert outcome.code is None


@pytest.mark.parametrize(
    ("stage", "failure"),
    [("RCPT", "hang up"), ("RCPT", "fall silent"), ("RCPT", "refuse"), ("end of data", "refuse")],
)
async def test_a_failure_the_relay_answered_or_before_the_message_is_temporary(
    stage: Stage, failure: Failure
) -> None:
    relay = Relay(stage, failure)
    async with relay.serving() as port:
        outcome = await send(connection_to(port))
    assert outcome.status == "temporary"


async def test_a_refused_recipient_leaves_the_connection_ready_for_the_next_email() -> None:
    relay = Relay("RCPT", "refuse")
    async with relay.serving() as port:
        connection = connection_to(port)
        refused = await send(connection)
        accepted = await send(connection)
        connection.close()
    assert (refused.status, refused.code) == ("temporary", 451)
    assert (accepted.status, accepted.code) == ("accepted", 250)
    assert relay.messages == [MESSAGE]


@pytest.mark.parametrize(
    ("stage", "failure", "code"),
    [
        ("greeting", "refuse", 554),
        ("EHLO", "refuse", 451),
        ("EHLO", "hang up", None),
        ("AUTH", "refuse", 535),
        ("MAIL", "refuse", 451),
        ("MAIL", "hang up", None),
        ("MAIL", "fall silent", None),
    ],
)
async def test_a_failure_before_the_recipient_is_named_is_the_relay_s_not_the_email_s(
    stage: Stage, failure: Failure, code: int | None
) -> None:
    relay = Relay(stage, failure, times=2)  # EHLO is tried again as HELO
    async with relay.serving() as port:
        outcome = await send(connection_to(port))
    assert (outcome.status, outcome.code) == ("unavailable", code)
    assert relay.messages == []


async def test_a_relay_that_is_not_listening_or_not_encrypted_is_unavailable() -> None:
    refused = await send(connection_to(free_port()))
    relay = Relay("RCPT", "refuse", times=0)
    async with relay.serving() as port:
        unencrypted = await send(connection_to(port, tls=SmtpTlsMode.STARTTLS))
    assert (refused.status, unencrypted.status) == ("unavailable", "unavailable")
    assert relay.messages == []


async def test_a_pooled_connection_the_relay_closed_is_replaced_for_the_next_email() -> None:
    relay = Relay("MAIL", "hang up", after=1)
    async with relay.serving() as port:
        connection = connection_to(port)
        first = await send(connection)
        second = await send(connection)
        connection.close()
    assert (first.status, second.status) == ("accepted", "accepted")
    assert relay.messages == [MESSAGE, MESSAGE]
