"""A small HTTP/1.1 load generator: keep-alive connections, open loop or closed loop.

Run as its own process so the load does not share an event loop with what it measures:

    python -m bench.loadgen --url http://127.0.0.1:8000/path --rate 500 --duration 10 \
        --header "Authorization: Bearer ..."          # open loop, prints latency percentiles
    python -m bench.loadgen --url ... --connections 32 --duration 10   # closed loop, max rate

Open-loop latency runs from each request's *scheduled* start, so a stalled server is not
hidden by the generator waiting for it (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 10.0  # seconds; a request still unanswered then counts as an error


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> Response:
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        chunked = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value.strip())
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        payload = await self._chunked() if chunked else await self.reader.readexactly(length)
        return Response(status, payload)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    """Keep-alive connections to one host, opened on demand, reused when idle."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.headers = headers or {}
        self._idle: list[Connection] = []

    def _head(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in {**self.headers, **headers}.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Response:
        head = self._head(method, path, body, headers or {})
        connection = self._idle.pop() if self._idle else await self._open()
        try:
            response = await connection.request(head, body)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return response

    async def _open(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return Connection(reader, writer)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


@dataclass(frozen=True)
class LoadResult:
    mode: str
    offered_per_second: float | None
    achieved_per_second: float
    ok: int
    refused: int  # 503: the server said at once that it is busy
    errors: int  # timeouts, broken connections and any other answer
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def _summary(
    mode: str,
    offered: float | None,
    latencies: list[float],
    refused: int,
    errors: int,
    elapsed: float,
) -> LoadResult:
    return LoadResult(
        mode=mode,
        offered_per_second=offered,
        achieved_per_second=len(latencies) / elapsed if elapsed > 0 else 0.0,
        ok=len(latencies),
        refused=refused,
        errors=errors,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def _failures(statuses: Counter[int]) -> tuple[int, int]:
    """(refused, errors) of the answers by status; 0 stands for no answer at all."""
    refused = statuses[503]
    return refused, sum(statuses.values()) - statuses[200] - refused


async def open_loop(pool: HttpPool, path: str, rate: float, duration: float) -> LoadResult:
    """`rate` requests/s for `duration` s, each sent at its scheduled time."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    total = int(rate * duration)
    started = time.perf_counter()

    async def one(scheduled: float) -> None:
        try:
            response = await asyncio.wait_for(pool.request("GET", path), REQUEST_TIMEOUT)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            statuses[0] += 1
            return
        statuses[response.status] += 1
        if response.status == 200:
            latencies.append(time.perf_counter() - scheduled)

    tasks = []
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return _summary("open", rate, latencies, *_failures(statuses), time.perf_counter() - started)


async def closed_loop(pool: HttpPool, path: str, connections: int, duration: float) -> LoadResult:
    """`connections` clients, each sending its next request as soon as the last one answers."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + duration

    async def client() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                response = await asyncio.wait_for(pool.request("GET", path), REQUEST_TIMEOUT)
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
                statuses[0] += 1
                continue
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return _summary("closed", None, latencies, *_failures(statuses), time.perf_counter() - started)


def _headers(values: list[str]) -> dict[str, str]:
    return {name.strip(): value.strip() for name, _, value in (v.partition(":") for v in values)}


async def _run(args: argparse.Namespace) -> LoadResult:
    parts = urlsplit(args.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    pool = HttpPool(f"{parts.scheme}://{parts.netloc}", _headers(args.header))
    try:
        if args.rate:
            return await open_loop(pool, path, args.rate, args.duration)
        return await closed_loop(pool, path, args.connections, args.duration)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop requests/s")
    parser.add_argument("--connections", type=int, default=32, help="closed loop clients")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    print(json.dumps(asdict(asyncio.run(_run(parser.parse_args())))))


if __name__ == "__main__":
    main()
