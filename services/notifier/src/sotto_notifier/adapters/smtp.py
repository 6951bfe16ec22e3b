"""A pool of reused SMTP connections; each send has exactly one envelope recipient."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosmtplib

from sotto_notifier.config import NotifierSettings, SmtpTlsMode
from sotto_notifier.domain import SmtpOutcome

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError)


class TlsRequiredError(aiosmtplib.SMTPException):
    """The connection is not encrypted and the settings forbid sending without TLS."""


def _unavailable(error: Exception) -> SmtpOutcome:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return SmtpOutcome(status="unavailable", code=error.code, reply=error.message)
    return SmtpOutcome(status="unavailable", code=None, reply=type(error).__name__)


def _outcome_of_code(code: int, reply: str) -> SmtpOutcome:
    if 400 <= code < 500:
        return SmtpOutcome(status="temporary", code=code, reply=reply)
    return SmtpOutcome(status="permanent", code=code, reply=reply)


class SmtpConnection:
    """One pooled client; sends a single-recipient email in two steps (the envelope, then the
    message) and says what the server answered."""

    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        start_tls: bool | None
        match settings.smtp_tls:
            case SmtpTlsMode.NONE:
                start_tls = False
            case SmtpTlsMode.STARTTLS:
                start_tls = True if settings.require_tls else None
            case SmtpTlsMode.TLS:
                start_tls = False
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            use_tls=settings.smtp_tls is SmtpTlsMode.TLS,
            start_tls=start_tls,
            validate_certs=settings.smtp_validate_certs,
            timeout=settings.smtp_timeout_seconds,
            local_hostname="sotto-notifier",
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        self.close()
        client = self._new_client()
        await client.connect()
        if self._settings.require_tls and client.get_transport_info("sslcontext") is None:
            client.close()
            raise TlsRequiredError("the SMTP connection is not encrypted; refusing to send")
        self._client = client
        return client

    async def envelope(self, *, sender: str, recipient: str) -> SmtpOutcome | None:
        """Connect if need be and open a transaction to `recipient`: None once the relay waits
        for the message, else why it will not (nothing was handed over). Only the answer to
        RCPT concerns the email; a failure before it is the relay's (`unavailable`)."""
        try:
            client = await self._sending_from(sender)
        except (aiosmtplib.SMTPException, *CONNECTION_ERRORS) as error:
            self.close()
            return _unavailable(error)
        try:
            await client.rcpt(recipient)
        except (aiosmtplib.SMTPException, *CONNECTION_ERRORS) as error:
            return await self._failure(error, handed_over=False)
        return None

    async def _sending_from(self, sender: str) -> aiosmtplib.SMTP:
        """A connection whose relay accepted MAIL FROM. A pooled connection the relay closed
        while it was idle is replaced once."""
        reused = self._client is not None and self._client.is_connected
        client = await self._connected()
        try:
            await client.mail(sender)
        except CONNECTION_ERRORS:
            if not reused:
                raise
            self.close()
            client = await self._connected()
            await client.mail(sender)
        return client

    async def hand_over(self, message: bytes) -> SmtpOutcome:
        """Send the message of the transaction `envelope` opened, and what the relay made of it."""
        client = self._client
        if client is None:
            raise RuntimeError("no open transaction: call envelope() first")
        try:
            response = await client.data(message)
        except (aiosmtplib.SMTPException, *CONNECTION_ERRORS) as error:
            return await self._failure(error, handed_over=True)
        return SmtpOutcome(status="accepted", code=response.code, reply=response.message)

    async def reset(self) -> None:
        """End the open transaction; the connection stays for the next email if the relay
        agrees."""
        if self._client is None:
            return
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, *CONNECTION_ERRORS):
            self.close()

    async def _failure(self, error: Exception, *, handed_over: bool) -> SmtpOutcome:
        """A 4xx or 5xx reply refuses the email; anything else, once the message was handed
        over (aiosmtplib's `data` sends the DATA command and the message in one), leaves unknown
        whether the relay took it."""
        if isinstance(error, aiosmtplib.SMTPResponseException):
            if error.code >= 400:
                await self.reset()
                return _outcome_of_code(error.code, error.message)
            code, reply = error.code, error.message
        else:
            code, reply = None, type(error).__name__
        self.close()
        return SmtpOutcome(status="unknown" if handed_over else "temporary", code=code, reply=reply)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SmtpPool:
    """`pool_size` reusable connections; a caller holds one for the length of a send."""

    def __init__(self, settings: NotifierSettings) -> None:
        self._idle: asyncio.Queue[SmtpConnection] = asyncio.Queue()
        self._all = [SmtpConnection(settings) for _ in range(settings.pool_size)]
        for connection in self._all:
            self._idle.put_nowait(connection)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        connection = await self._idle.get()
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        finally:
            self._idle.put_nowait(connection)

    def close(self) -> None:
        for connection in self._all:
            connection.close()
