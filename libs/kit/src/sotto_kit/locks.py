"""One asyncio lock per key, kept only while someone holds or awaits it.

FerretDB rewrites a whole document on every update (it reads, applies, writes back), so two
updates of one document at once can lose one of them; MongoDB applies each atomically. A
process serialises its own writes to a document with the document's lock.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Hashable


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __call__(self, key: Hashable) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock
