"""Read back what the SMTP catcher (local catcher or Mailpit) received."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class CaughtMail:
    id: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    text: str
    html: str
    envelope_recipients: list[str]
    sender: str

    @property
    def all_text(self) -> str:
        return "\n".join((self.subject, self.sender, self.text, self.html))


def _addresses(items: list[dict[str, Any]] | None) -> list[str]:
    return [item["Address"] for item in items or []]


class MailCatcher:
    def __init__(self, api_url: str) -> None:
        self._client = httpx.AsyncClient(base_url=api_url, timeout=10)

    async def summaries(self) -> list[dict[str, Any]]:
        response = await self._client.get("/api/v1/messages", params={"limit": 100000})
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def to_address(self, address: str) -> list[CaughtMail]:
        """Full messages for one recipient address (tests use unique addresses)."""
        wanted = [
            summary
            for summary in await self.summaries()
            if address.lower() in (a.lower() for a in _addresses(summary.get("To")))
        ]
        return [await self.message(summary["ID"]) for summary in wanted]

    async def message(self, message_id: str) -> CaughtMail:
        response = await self._client.get(f"/api/v1/message/{message_id}")
        response.raise_for_status()
        data = response.json()
        envelope = data.get("Envelope") or {}
        return CaughtMail(
            id=message_id,
            to=_addresses(data.get("To")),
            cc=_addresses(data.get("Cc")),
            bcc=_addresses(data.get("Bcc")),
            subject=data.get("Subject", ""),
            text=data.get("Text", ""),
            html=data.get("HTML", ""),
            envelope_recipients=list(envelope.get("RcptTo") or _addresses(data.get("To"))),
            sender=(data.get("From") or {}).get("Address", ""),
        )

    async def close(self) -> None:
        await self._client.aclose()
