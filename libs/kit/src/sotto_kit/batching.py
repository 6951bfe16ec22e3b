"""Group commit: writes (and `_id` reads) handed in while the previous one runs go to the
database as one command.

Consumers handle up to `prefetch` messages at once, and each used to send its own insert or
update. A batcher queues them and one sender task sends whatever queued up meanwhile as one
`insert_many`, `bulk_write` or `delete_many`; each caller still awaits, and learns the outcome
of, its own document. One command of many documents costs the server about what one of one
does (FerretDB: an update by `_id` 1.2 ms of its CPU alone, 0.65 ms within a bulk write of 32,
and the client side a tenth), and under no load nothing waits: a lone write goes out at once.

Reads batch the same way (`FindBatcher`, the DataLoader pattern): lookups by `_id` asked for
while one is on its way go out as one `find` with `$in`, and an `_id` asked for by several
callers at once is read once. A read never joins one already sent, so it sees every write that
finished before it was asked for.

Documents are found by `_id` only: an equality, or `$in` for reads and deletes, which FerretDB's
SQLite backend looks up by index only as `scripts/infra` builds it (upstream, `$in` scans).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from bson import decode
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure

from sotto_kit.mongo import Document

DUPLICATE_KEY = 11000
# Upstream FerretDB 1.24 holds a database connection per statement of an update command until
# the command ends, from a pool of 100 shared by every client (`scripts/infra` patches that):
# stay well below, at what one consumer's prefetch hands in at once anyway.
UPDATE_BATCH_LIMIT = 32
BATCH_LIMIT = 256

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Batcher(Generic[ItemT, ResultT]):
    def __init__(self, collection: AsyncCollection[Document], limit: int) -> None:
        self._collection = collection
        self._limit = limit
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def _submit(self, item: ItemT) -> ResultT:
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(
                self._drain(), name=f"batcher-{self._collection.name}"
            )
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._limit]
                del self._queue[: self._limit]
                outcomes = await self._outcomes([item for item, _ in batch])
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
                batch = []
        except BaseException as error:  # cancelled at shutdown: nobody may wait forever
            failure = error if isinstance(error, Exception) else RuntimeError("stopping")
            for _, done in [*batch, *self._queue]:
                if not done.done():
                    done.set_exception(failure)
            self._queue.clear()
            if not isinstance(error, Exception):
                raise

    async def _outcomes(self, items: Sequence[ItemT]) -> list[ResultT | BaseException]:
        """One command for `items`; the result or the error of each, in order."""
        try:
            return await self._command(items)
        except BulkWriteError as error:
            problems = {int(e["index"]): e for e in error.details.get("writeErrors", [])}
            return [self._on_problem(problems.get(index)) for index in range(len(items))]
        except Exception as error:  # the whole command failed: every caller gets the error
            return [error] * len(items)

    async def _command(self, items: Sequence[ItemT]) -> list[ResultT | BaseException]:
        raise NotImplementedError

    def _on_problem(self, problem: dict[str, Any] | None) -> ResultT | BaseException:
        if problem is None:
            return self._succeeded()
        return OperationFailure(str(problem.get("errmsg")), problem.get("code"))

    def _succeeded(self) -> ResultT:
        raise NotImplementedError


class InsertBatcher(_Batcher[Document, bool]):
    """`insert`: True if this document was inserted, False if its `_id` (or another unique
    key) already existed; any other error is raised to the caller it concerns."""

    def __init__(self, collection: AsyncCollection[Document], limit: int = BATCH_LIMIT) -> None:
        super().__init__(collection, limit)

    async def insert(self, document: Document) -> bool:
        return await self._submit(document)

    async def _command(self, items: Sequence[Document]) -> list[bool | BaseException]:
        await self._collection.insert_many(list(items), ordered=False)
        return [True] * len(items)

    def _on_problem(self, problem: dict[str, Any] | None) -> bool | BaseException:
        if problem is not None and problem.get("code") == DUPLICATE_KEY:
            return False
        return super()._on_problem(problem)

    def _succeeded(self) -> bool:
        return True


class UpdateBatcher(_Batcher[tuple[Any, Document], None]):
    """`update(document_id, update)`: one `UpdateOne` by `_id` in a shared bulk write. For
    writes whose outcome the caller does not branch on (no match is not an error)."""

    def __init__(
        self, collection: AsyncCollection[Document], limit: int = UPDATE_BATCH_LIMIT
    ) -> None:
        super().__init__(collection, min(limit, UPDATE_BATCH_LIMIT))

    async def update(self, document_id: Any, update: Document) -> None:
        await self._submit((document_id, update))

    async def _command(self, items: Sequence[tuple[Any, Document]]) -> list[BaseException | None]:
        operations = [UpdateOne({"_id": key}, update) for key, update in items]
        await self._collection.bulk_write(operations, ordered=False)
        return [None] * len(items)

    def _succeeded(self) -> None:
        return None


class DeleteBatcher(_Batcher[Any, None]):
    """`delete(document_id)`, batched into one `delete_many` on `_id` `$in` (string ids: an
    index lookup on the patched FerretDB; upstream it reads the whole collection, so keep
    such collections small)."""

    def __init__(self, collection: AsyncCollection[Document], limit: int = BATCH_LIMIT) -> None:
        super().__init__(collection, limit)

    async def delete(self, document_id: Any) -> None:
        await self._submit(document_id)

    async def _command(self, items: Sequence[Any]) -> list[BaseException | None]:
        await self._collection.delete_many({"_id": {"$in": list(items)}})
        return [None] * len(items)

    def _succeeded(self) -> None:
        return None


class FindBatcher(_Batcher[Any, Document | None]):
    """`find(document_id)`: the document with that `_id` (with `projection`), or None. Each
    caller gets a document of its own, free to change, even when several asked for one `_id`."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        projection: Document | None = None,
        limit: int = BATCH_LIMIT,
    ) -> None:
        super().__init__(collection, limit)
        raw: CodecOptions[RawBSONDocument] = collection.codec_options.with_options(
            document_class=RawBSONDocument
        )
        self._raw: AsyncCollection[RawBSONDocument] = collection.with_options(codec_options=raw)
        self._decoding = collection.codec_options
        self._projection = projection

    async def find(self, document_id: Any) -> Document | None:
        return await self._submit(document_id)

    async def _command(self, items: Sequence[Any]) -> list[Document | BaseException | None]:
        wanted = list(dict.fromkeys(items))
        query = {"_id": wanted[0]} if len(wanted) == 1 else {"_id": {"$in": wanted}}
        found: dict[Any, bytes | memoryview[int]] = {
            document["_id"]: document.raw
            async for document in self._raw.find(query, self._projection)
        }
        return [decode(found[key], self._decoding) if key in found else None for key in items]
