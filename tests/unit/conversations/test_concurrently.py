"""`concurrently`: independent reads at once, failures as if they had run in order."""

from __future__ import annotations

import asyncio

import pytest

from sotto_conversations.handlers import concurrently


async def test_reads_overlap_and_results_keep_argument_order() -> None:
    both_started = asyncio.Event()
    started = 0

    async def read(value: str) -> str:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()  # would wait forever if the reads ran one after the other
        return value

    assert await asyncio.wait_for(concurrently(read("settings"), read("actor")), 5) == (
        "settings",
        "actor",
    )


async def test_the_first_argument_failure_wins_even_when_a_later_one_fails_first() -> None:
    later_failed = asyncio.Event()

    async def practice() -> str:
        await later_failed.wait()
        raise LookupError("practice")

    async def actor() -> str:
        later_failed.set()
        raise PermissionError("team member")

    with pytest.raises(LookupError, match="practice"):
        await concurrently(practice(), actor())
