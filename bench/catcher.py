"""What the SMTP catcher accepted for a benchmark practice: receipt times and envelopes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bench.loadgen import HttpPool
from bench.practice import BenchPractice

ENVELOPE_CHECK_CONCURRENCY = 16
FULL_LISTING_EVERY = 15.0


@dataclass(frozen=True)
class Receipt:
    message_id: str
    client_index: int
    accepted_at: float  # seconds since the epoch, as the catcher stamped it (ms precision)


class Catcher:
    def __init__(self, api_url: str) -> None:
        self._pool = HttpPool(api_url)

    async def _call(self, method: str, path: str, payload: object = None) -> bytes:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body else {}
        response = await self._pool.request(method, path, body, headers)
        if response.status >= 400:
            raise RuntimeError(f"catcher answered {response.status} to {method} {path}")
        return response.body

    async def _json(self, path: str) -> object:
        return json.loads(await self._call("GET", path))

    async def receipts(self, practice: BenchPractice) -> list[Receipt]:
        """Every email to one of the practice's clients that the catcher holds."""
        listing = await self._json("/api/v1/messages?limit=100000")
        assert isinstance(listing, dict)
        found = []
        for summary in listing["messages"]:
            for address in summary.get("To") or []:
                index = practice.client_index(address["Address"])
                if index is not None:
                    created = datetime.fromisoformat(summary["Created"].replace("Z", "+00:00"))
                    found.append(Receipt(summary["ID"], index, created.timestamp()))
        return found

    async def total(self) -> int:
        """How many emails the catcher holds (all senders): cheap, unlike `receipts`."""
        listing = await self._json("/api/v1/messages?limit=0")
        assert isinstance(listing, dict)
        return int(listing["total"])

    async def wait_for(
        self, practice: BenchPractice, count: int, timeout: float, poll: float = 0.5
    ) -> list[Receipt]:
        """Poll (gently: the catcher shares the cores) until `count` emails arrived.

        Listing every email costs the catcher and this process time that grows with what it
        holds (seconds of CPU at 10,000), so the cheap total is polled until it could include
        `count` of ours, counting the others seen at the last listing; and a listing at least
        every FULL_LISTING_EVERY seconds, in case someone else deleted theirs meanwhile."""
        deadline = time.monotonic() + timeout
        others = 0
        listed_at = time.monotonic()
        while True:
            total = await self.total()
            now = time.monotonic()
            if total >= others + count or now > deadline or now - listed_at > FULL_LISTING_EVERY:
                found = await self.receipts(practice)
                if len(found) >= count or time.monotonic() > deadline:
                    return found
                others = total - len(found)
                listed_at = time.monotonic()
            await asyncio.sleep(poll)

    async def envelope_recipients(self, message_ids: list[str]) -> list[list[str]]:
        """RCPT TO of each message, as the catcher recorded the SMTP envelope."""
        limit = asyncio.Semaphore(ENVELOPE_CHECK_CONCURRENCY)

        async def one(message_id: str) -> list[str]:
            async with limit:
                detail = await self._json(f"/api/v1/message/{message_id}")
            assert isinstance(detail, dict)
            return list(detail["Envelope"]["RcptTo"])

        return await asyncio.gather(*(one(message_id) for message_id in message_ids))

    async def delete(self, message_ids: list[str]) -> None:
        """Remove only these messages: others may share the catcher."""
        for start in range(0, len(message_ids), 5000):
            chunk = message_ids[start : start + 5000]
            await self._call("DELETE", "/api/v1/messages", {"IDs": chunk})

    async def delete_to(self, matches: Callable[[str], bool]) -> int:
        """Remove messages addressed to matching recipients (other benchmarks' leftovers)."""
        listing = await self._json("/api/v1/messages?limit=100000")
        assert isinstance(listing, dict)
        doomed = [
            summary["ID"]
            for summary in listing["messages"]
            if any(matches(address["Address"].lower()) for address in summary.get("To") or [])
        ]
        await self.delete(doomed)
        return len(doomed)

    def close(self) -> None:
        self._pool.close()
