"""A bounded, low-CPU HTTP load generator for bench/serve.py (asyncio + aiohttp, 127.0.0.1 only).

Closed loop: ``concurrency`` requests in flight, each POSTing one of a few pre-encoded bodies,
until ``count`` requests are answered or ``max_seconds`` have passed, whichever is first: it
stops by itself. Per request it keeps the body's index, the status, the latency and (when
asked) the response bytes, so that the caller can check every response afterwards without the
generator parsing JSON while it measures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np


@dataclass
class Result:
    """One load's requests: body index, HTTP status (-1: no response), latency, body bytes."""

    seconds: float = 0.0
    index: list[int] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(s == 200 for s in self.status)

    def summary(self, rows_per_request: int = 1) -> dict:
        latency = np.asarray(self.latency) * 1000
        n = len(self.status)
        return {
            "requests": n,
            "failed": n - self.ok,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(n / self.seconds, 1) if self.seconds else 0.0,
            "rows_per_s": round(n * rows_per_request / self.seconds) if self.seconds else 0,
            "p50_ms": round(float(np.percentile(latency, 50)), 2) if n else None,
            "p99_ms": round(float(np.percentile(latency, 99)), 2) if n else None,
        }


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"the load goes to 127.0.0.1 only, not {host}")


async def load(
    url: str,
    bodies: list[bytes],
    *,
    count: int,
    concurrency: int,
    max_seconds: float,
    keep: bool = False,
    timeout: float = 60.0,
    during=None,
    content_type: str = "application/json",
    accept: str | None = None,
) -> Result:
    """POST ``bodies`` (round robin, as ``content_type``, asking for ``accept``) to ``url``;
    ``during`` (an async function of the :class:`Result` so far) runs beside the load, which
    ends when both are done."""
    import aiohttp

    check_loopback(url)
    result = Result()
    next_index = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    headers = {"content-type": content_type}
    if accept is not None:
        headers["accept"] = accept

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < count and time.perf_counter() < deadline:
            k = next_index % len(bodies)
            next_index += 1
            sent = time.perf_counter()
            try:
                async with session.post(url, data=bodies[k], headers=headers) as response:
                    data = await response.read()
                    status = response.status
            except Exception as exc:  # a failure is counted, not raised
                data, status = b"", -1
                result.errors.append(f"{type(exc).__name__}: {exc}")
            result.latency.append(time.perf_counter() - sent)
            result.sent.append(sent)
            result.index.append(k)
            result.status.append(status)
            if keep or status != 200:
                result.body.append(data)

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        tasks = [worker(session) for _ in range(concurrency)]
        if during is not None:
            tasks.append(during(result))
        await asyncio.wait_for(asyncio.gather(*tasks), max_seconds + timeout + 600)
    result.seconds = time.perf_counter() - start
    return result


def run_load(url: str, bodies: list[bytes], **kw) -> Result:
    return asyncio.run(load(url, bodies, **kw))
