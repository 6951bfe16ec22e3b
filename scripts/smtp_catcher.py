#!/usr/bin/env python3
"""Local SMTP catcher with a Mailpit-compatible subset of Mailpit's HTTP API.

Used where Mailpit cannot run (no Docker). Needs only `aiosmtpd`; `scripts/infra up`
runs it from a dedicated venv in `.state/catcher-venv`. Everything is kept in memory.

    python scripts/smtp_catcher.py --smtp-port 1025 --http-port 8025 [--mail-dir DIR]

HTTP API (127.0.0.1:8025 by default), shaped like Mailpit's so one client serves both:

    GET    /api/v1/messages?start=0&limit=50   newest first: {"total", "count", "start",
                                               "messages": [summary, ...]}
    GET    /api/v1/search?query=...            same shape; terms `to:`, `from:`,
                                               `subject:`, bare words match the subject
    GET    /api/v1/message/{ID}                summary + "Text", "HTML" and the extra
                                               (non-Mailpit) field
                                               "Envelope": {"MailFrom", "RcptTo": [...]}
                                               ID "latest" is the newest message
    GET    /api/v1/message/{ID}/raw            the raw RFC 822 message
    DELETE /api/v1/messages                    delete all, or {"IDs": [...]} only those
    GET    /api/v1/info, /livez, /readyz       health
    GET    /                                   tiny HTML list of recent messages

Summary fields: ID, MessageID, From {Name, Address}, To/Cc/Bcc/ReplyTo [{Name, Address}],
Subject, Created (ISO 8601, UTC), Size, Read, Tags, Attachments. Bcc lists envelope
recipients that appear in neither To nor Cc (as Mailpit does).

Fault injection (not in Mailpit), decided per RCPT TO:
    reject...@any          -> 550 5.1.1 mailbox unavailable, always
    tempfail<N>...@any     -> 451 4.3.0 temporary failure for the first N RCPT TO
                              attempts of that exact address (case-insensitive), then
                              accepted; N defaults to 1 (`tempfail+x@y`).
                              e.g. tempfail3+abc@example.test fails 3 times, then works.
and per MAIL FROM (a relay refusing the sender, e.g. its account suspended):
    relayreject...@any     -> 554 5.7.1 sender refused, always
    relaydown<N>...@any    -> 421 4.7.0 service not available for the first N MAIL FROM
                              of that exact address, then accepted; N defaults to 1.
Any AUTH is accepted; AUTH is never required.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import re
import signal
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parseaddr
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

MAX_LIMIT = 100_000
_TEMPFAIL = re.compile(r"^tempfail(\d*)")
_RELAYDOWN = re.compile(r"^relaydown(\d*)")
_HEADER_PARSER = BytesHeaderParser(policy=email.policy.compat32)
_FULL_PARSER = BytesParser(policy=email.policy.default)


class Message:
    __slots__ = ("_summary", "created", "id", "mail_from", "raw", "rcpt_tos")

    def __init__(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        self.id = uuid.uuid4().hex
        self.created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.raw = raw
        self._summary: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            headers = _HEADER_PARSER.parsebytes(self.raw)

            def addrs(name: str) -> list[dict[str, str]]:
                values = [str(v) for v in headers.get_all(name, [])]
                return [{"Name": n, "Address": a} for n, a in getaddresses(values) if a]

            to, cc = addrs("To"), addrs("Cc")
            in_headers = {a["Address"].lower() for a in to + cc}
            bcc = [{"Name": "", "Address": r} for r in self.rcpt_tos if r.lower() not in in_headers]
            from_name, from_addr = parseaddr(str(headers.get("From", "")))
            self._summary = {
                "ID": self.id,
                "MessageID": str(headers.get("Message-ID", "")).strip().strip("<>"),
                "Read": False,
                "From": {"Name": from_name, "Address": from_addr},
                "To": to,
                "Cc": cc,
                "Bcc": bcc,
                "ReplyTo": addrs("Reply-To"),
                "Subject": _decode_header(headers.get("Subject", "")),
                "Created": self.created,
                "Size": len(self.raw),
                "Tags": [],
                "Attachments": 0,
            }
        return self._summary

    def detail(self) -> dict[str, Any]:
        msg = _FULL_PARSER.parsebytes(self.raw)
        text = html = ""
        for part in msg.walk():
            if part.is_multipart() or part.get_content_disposition() == "attachment":
                continue
            ctype = part.get_content_type()
            try:
                content = part.get_content()
            except (LookupError, ValueError):
                continue
            if ctype == "text/plain" and not text:
                text = content
            elif ctype == "text/html" and not html:
                html = content
        out = dict(self.summary())
        out["Text"] = text.replace("\r\n", "\n")
        out["HTML"] = html.replace("\r\n", "\n")
        out["Date"] = str(msg.get("Date", ""))
        out["ReturnPath"] = self.mail_from
        out["Envelope"] = {"MailFrom": self.mail_from, "RcptTo": list(self.rcpt_tos)}
        return out


def _decode_header(value: Any) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # malformed encoded-words: show them as they are
        return str(value)


class Store:
    def __init__(self, mail_dir: Path | None) -> None:
        self.messages: list[Message] = []
        self.by_id: dict[str, Message] = {}
        self.mail_dir = mail_dir
        if mail_dir is not None:
            mail_dir.mkdir(parents=True, exist_ok=True)

    def add(self, message: Message) -> None:
        self.messages.append(message)
        self.by_id[message.id] = message
        if self.mail_dir is not None:
            (self.mail_dir / f"{message.id}.eml").write_bytes(message.raw)

    def get(self, message_id: str) -> Message | None:
        if message_id == "latest":
            return self.messages[-1] if self.messages else None
        return self.by_id.get(message_id)

    def delete(self, ids: list[str] | None) -> None:
        if ids is None:
            self.messages.clear()
            self.by_id.clear()
            return
        doomed = {i for i in ids if i in self.by_id}
        for i in doomed:
            del self.by_id[i]
        self.messages = [m for m in self.messages if m.id not in doomed]


class Handler:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.attempts: defaultdict[str, int] = defaultdict(int)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("relayreject"):
            return "554 5.7.1 sender refused"
        match = _RELAYDOWN.match(local)
        if match:
            key = f"from:{address.lower()}"
            self.attempts[key] += 1
            if self.attempts[key] <= int(match.group(1) or 1):
                return "421 4.7.0 service not available"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        match = _TEMPFAIL.match(local)
        if match:
            key = address.lower()
            self.attempts[key] += 1
            if self.attempts[key] <= int(match.group(1) or 1):
                return "451 4.3.0 temporary failure"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.store.add(Message(envelope.mail_from or "", list(envelope.rcpt_tos), raw))
        return "250 2.0.0 OK: queued"


def _accept_any_auth(*_args: Any, **_kwargs: Any) -> AuthResult:
    return AuthResult(success=True)


class Http:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, target, version = line.decode("latin-1").split()
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                try:
                    status, ctype, payload = self.route(method.upper(), target, body)
                except Exception as exc:  # keep serving; report the error to the client
                    status, ctype, payload = _json(500, {"error": repr(exc)})
                keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                head = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                    f"Access-Control-Allow-Origin: *\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                )
                writer.write(
                    head.encode("latin-1") + (b"" if method.upper() == "HEAD" else payload)
                )
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def route(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method in ("GET", "HEAD"):
            if path in ("/livez", "/readyz", "/health"):
                return 200, "text/plain", b"ok"
            if path == "/api/v1/info":
                return _json(
                    200, {"Version": "sotto-catcher", "Messages": len(self.store.messages)}
                )
            if path == "/api/v1/messages":
                return _json(200, self.listing(self.store.messages, query))
            if path == "/api/v1/search":
                return _json(200, self.listing(self.search(query.get("query", "")), query))
            m = re.fullmatch(r"/api/v1/message/([^/]+)(/raw)?", path)
            if m:
                msg = self.store.get(m.group(1))
                if msg is None:
                    return _json(404, {"error": "message not found"})
                if m.group(2):
                    return 200, "text/plain; charset=utf-8", msg.raw
                return _json(200, msg.detail())
            if path == "/":
                return 200, "text/html; charset=utf-8", self.index()
            return _json(404, {"error": "not found"})
        if method == "DELETE" and path in ("/api/v1/messages", "/api/v1/search"):
            ids = None
            if body.strip():
                ids = json.loads(body).get("IDs") or None
            self.store.delete(ids)
            return 200, "text/plain", b"ok"
        return _json(405, {"error": "method not allowed"})

    def listing(self, messages: list[Message], query: dict[str, str]) -> dict[str, Any]:
        start = max(0, int(query.get("start", 0)))
        limit = min(MAX_LIMIT, max(0, int(query.get("limit", 50))))
        total = len(messages)
        hi = total - start  # newest first: walk backwards from the end
        lo = max(0, hi - limit)
        page = [m.summary() for m in reversed(messages[lo:hi])] if hi > 0 else []
        return {
            "total": total,
            "messages_count": total,
            "unread": total,
            "count": len(page),
            "start": start,
            "tags": [],
            "messages": page,
        }

    def search(self, query: str) -> list[Message]:
        terms = re.findall(r'(\w+:)?"([^"]*)"|(\w+:)?(\S+)', query)
        checks: list[tuple[str, str]] = []
        for field_q, value_q, field, value in terms:
            checks.append(
                ((field_q or field or "").rstrip(":").lower(), (value_q or value).lower())
            )

        def ok(m: Message) -> bool:
            s = m.summary()
            for field, value in checks:
                if field == "to":
                    hay = " ".join(
                        a["Address"] + " " + a["Name"] for a in s["To"] + s["Cc"] + s["Bcc"]
                    )
                elif field == "from":
                    hay = s["From"]["Address"] + " " + s["From"]["Name"]
                else:
                    hay = s["Subject"]
                if value not in hay.lower():
                    return False
            return True

        return [m for m in self.store.messages if ok(m)]

    def index(self) -> bytes:
        rows = []
        for m in reversed(self.store.messages[-200:]):
            s = m.summary()
            rows.append(
                f"<tr><td>{escape(s['Created'])}</td><td>{escape(s['From']['Address'])}</td>"
                f"<td>{escape(', '.join(m.rcpt_tos))}</td>"
                f"<td><a href='/api/v1/message/{m.id}/raw'>{escape(s['Subject']) or '(no subject)'}</a>"
                f"</td></tr>"
            )
        return (
            "<!doctype html><meta charset=utf-8><title>Sotto SMTP catcher</title>"
            f"<h1>SMTP catcher: {len(self.store.messages)} messages</h1>"
            "<p>JSON API: <a href='/api/v1/messages'>/api/v1/messages</a></p>"
            "<table border=1 cellpadding=4><tr><th>Created</th><th>From</th><th>Envelope to</th>"
            "<th>Subject</th></tr>" + "".join(rows) + "</table>"
        ).encode()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def _json(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj, ensure_ascii=False).encode()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument(
        "--mail-dir", type=Path, default=None, help="also write each message as .eml here"
    )
    args = parser.parse_args()

    store = Store(args.mail_dir)
    handler = Handler(store)
    loop = asyncio.get_running_loop()

    def smtp_factory() -> SMTP:
        return SMTP(
            handler,
            hostname="sotto-catcher",  # avoids a slow getfqdn() per connection
            ident="Sotto SMTP catcher",
            data_size_limit=50 * 1024 * 1024,
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            auth_required=False,
            authenticator=_accept_any_auth,
        )

    smtp_server = await loop.create_server(
        smtp_factory, args.host, args.smtp_port, reuse_address=True
    )
    http_server = await asyncio.start_server(
        Http(store).serve, args.host, args.http_port, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"smtp catcher: smtp://{args.host}:{args.smtp_port} http://{args.host}:{args.http_port}",
        flush=True,
    )
    await stop.wait()
    smtp_server.close()
    http_server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
