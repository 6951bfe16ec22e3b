"""Scenario 3: one announcement to every client of a practice, until the last email is accepted.

The POST is answered on acceptance (202); the conversations, reminders and emails follow in
the background. Timed from the start of the staff POST to the catcher's receipt of the N-th
client email; afterwards the SMTP envelope of every one of them is checked for exactly one
recipient, that client.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from bench.catcher import Catcher, Receipt
from bench.practice import BenchPractice, owner_pool
from tests.support.system import RunningSystem

SECONDS_PER_THOUSAND_ALLOWED = 30.0
ANNOUNCE_ATTEMPTS = 12


@dataclass(frozen=True)
class FanoutResult:
    clients: int
    delivered: int
    seconds: float
    emails_per_second: float
    single_recipient: int
    wrong_envelopes: int

    @property
    def missing(self) -> int:
        return self.clients - self.delivered

    @property
    def duplicates(self) -> int:
        return self.single_recipient + self.wrong_envelopes - self.delivered


async def _announce(system: RunningSystem, practice: BenchPractice) -> float:
    pool = owner_pool(system, practice)
    payload = {
        "announcement_id": f"bench-{uuid.uuid4().hex[:12]}",
        "subject": "Office closed on Friday",
        "body": "The office is closed on Friday; the portal stays open.",
    }
    body = json.dumps(payload).encode()
    try:
        posted_at = time.time()
        # accepted at once (202) and sent in the background; a conversations service too busy
        # to accept it in time answers 503, and the same announcement id makes a retry safe
        for _ in range(ANNOUNCE_ATTEMPTS):
            response = await pool.request("POST", "/api/staff/announcements", body)
            if response.status != 503:
                break
        if response.status != 202:
            raise RuntimeError(f"announcement refused: {response.status} {response.body[:300]!r}")
        return posted_at
    finally:
        pool.close()


def _is_only(recipients: list[str], practice: BenchPractice, index: int) -> bool:
    return [address.lower() for address in recipients] == [practice.client_email(index)]


async def fan_out(system: RunningSystem, practice: BenchPractice, catcher: Catcher) -> FanoutResult:
    return await checked(practice, catcher, *await announce_and_wait(system, practice, catcher))


async def announce_and_wait(
    system: RunningSystem, practice: BenchPractice, catcher: Catcher
) -> tuple[float, list[Receipt]]:
    """When the announcement was posted, and the receipts of its emails (all, or those the
    wait saw)."""
    timeout = max(120.0, SECONDS_PER_THOUSAND_ALLOWED * practice.clients / 1000)
    posted_at = await _announce(system, practice)
    return posted_at, await catcher.wait_for(practice, practice.clients, timeout, poll=1.0)


async def checked(
    practice: BenchPractice, catcher: Catcher, posted_at: float, receipts: list[Receipt]
) -> FanoutResult:
    """The figures, once every email's envelope is checked; the emails are deleted."""
    last = max((receipt.accepted_at for receipt in receipts), default=posted_at)
    envelopes = await catcher.envelope_recipients([receipt.message_id for receipt in receipts])
    single = sum(
        _is_only(envelope, practice, receipt.client_index)
        for receipt, envelope in zip(receipts, envelopes, strict=True)
    )
    await catcher.delete([receipt.message_id for receipt in receipts])
    seconds = last - posted_at
    return FanoutResult(
        clients=practice.clients,
        delivered=len({receipt.client_index for receipt in receipts}),
        seconds=seconds,
        emails_per_second=len(receipts) / seconds if seconds > 0 else 0.0,
        single_recipient=single,
        wrong_envelopes=len(receipts) - single,
    )
