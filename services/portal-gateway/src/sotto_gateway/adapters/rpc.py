"""Request/reply calls to conversations and audit, with a short cache for practice settings."""

from __future__ import annotations

from typing import TypeVar

from cachetools import TTLCache
from pydantic import BaseModel

from sotto_contracts.base import Message, Problem
from sotto_contracts.conversations import GetSettings, PracticeSettings
from sotto_gateway.adapters.store import PRACTICES_CACHED
from sotto_kit.messaging import ProblemError, RpcClient

ResultT = TypeVar("ResultT", bound=BaseModel)

JsonResult = dict[str, object] | list[object] | None


class Services:
    """The gateway's view of conversations and audit: typed results or ProblemError."""

    def __init__(self, rpc: RpcClient, *, settings_cache_seconds: float) -> None:
        self._rpc = rpc
        self._settings: TTLCache[str, PracticeSettings] = TTLCache(
            maxsize=PRACTICES_CACHED, ttl=settings_cache_seconds
        )

    async def ask(self, request: Message, result_type: type[ResultT]) -> ResultT:
        result = await self._rpc.result(request, result_type)
        if isinstance(result, PracticeSettings):
            self._settings[request.practice_id] = result
        return result

    async def ask_json(self, request: Message) -> bytes:
        """The result's JSON as the answering service wrote it, for a caller that passes it on."""
        return await self._rpc.result_json(request)

    async def ask_many(self, request: Message, item_type: type[ResultT]) -> list[ResultT]:
        reply = await self._rpc.call(request)
        if not reply.ok:
            raise ProblemError(reply.problem or Problem(code="unknown", detail="no detail"))
        items = reply.result if isinstance(reply.result, list) else []
        return [item_type.model_validate(item) for item in items]

    async def command(self, request: Message) -> JsonResult:
        """A state-changing request; its result is passed through as conversations gave it."""
        reply = await self._rpc.call(request)
        if not reply.ok:
            raise ProblemError(reply.problem or Problem(code="unknown", detail="no detail"))
        return reply.result

    async def get(self, practice_id: str) -> PracticeSettings:
        cached = self._settings.get(practice_id)
        if cached is not None:
            return cached
        return await self.ask(GetSettings(practice_id=practice_id), PracticeSettings)

    def forget(self, practice_id: str) -> None:
        self._settings.pop(practice_id, None)

    async def close(self) -> None:
        await self._rpc.close()
