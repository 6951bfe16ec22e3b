"""A clock a test moves by hand, for code that takes `clock: Callable[[], datetime]`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sotto_contracts.base import utc_now


class MovingClock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, *, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
