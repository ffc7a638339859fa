"""A swap under load: ``raymix.serving.swap`` while a bounded async load runs on 127.0.0.1.

Two runs of the synthetic set (the same layout, other models) on two replicas. The load sends
small batches of validation rows, a fixed number of requests at most and for a bounded time,
only to 127.0.0.1; the swap starts once some have been answered. Done when: no request fails,
every response names the run that scored it and its scores are that run's (to 1e-6) and not
the other's, every response answered before the swap began is the old run's and every request
sent after the swap returned is scored by the new one.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

import raymix.serving

from .conftest import HTTP_TIMEOUT
from .rows import validation_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CONCURRENCY = 8
SWAP_AFTER = 300  # responses before the swap starts
AFTER_SWAP = 200  # requests sent once the swap has returned, then the load stops
MAX_REQUESTS = 6000  # the load's bounds, whatever happens
MAX_SECONDS = 300.0


class Load:
    """Requests of a few rows each until the swap has returned and AFTER_SWAP more are sent
    (at most MAX_REQUESTS, MAX_SECONDS); per request (sent, answered, uids, status, body)."""

    def __init__(self, url: str, rows: list[dict], swap):
        self.url = url
        self.rows = rows
        self.swap = swap
        self.rng = np.random.default_rng(11)
        self.results: list[tuple[float, float, list[int], int, dict | str]] = []
        self.sent = 0
        self.swap_started: float | None = None
        self.swap_returned: float | None = None
        self.sent_after_swap = 0

    def more(self) -> bool:
        return (
            self.sent < MAX_REQUESTS
            and self.sent_after_swap < AFTER_SWAP
            and time.monotonic() - self.start < MAX_SECONDS
        )

    async def worker(self, client: httpx.AsyncClient) -> None:
        while self.more():
            self.sent += 1
            if self.swap_returned is not None:
                self.sent_after_swap += 1
            picked = self.rng.choice(len(self.rows), size=int(self.rng.integers(1, 9)))
            rows = [self.rows[k] for k in picked]
            sent = time.monotonic()
            try:
                response = await client.post(f"{self.url}/predict", json={"rows": rows})
                status, body = response.status_code, response.json()
            except Exception as exc:  # a failed request is a result, not a crash of the load
                status, body = -1, f"{type(exc).__name__}: {exc}"
            uids = [row["uid"] for row in rows]
            self.results.append((sent, time.monotonic(), uids, status, body))

    async def swapper(self) -> None:
        while len(self.results) < SWAP_AFTER and self.more():
            await asyncio.sleep(0.01)
        self.swap_started = time.monotonic()
        await asyncio.to_thread(self.swap)
        self.swap_returned = time.monotonic()

    async def run(self) -> None:
        self.start = time.monotonic()
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=limits) as client:
            tasks = [self.worker(client) for _ in range(CONCURRENCY)]
            await asyncio.wait_for(asyncio.gather(self.swapper(), *tasks), MAX_SECONDS + 120)


def test_a_swap_under_load_fails_no_request_and_each_is_scored_by_one_run(
    synthetic_run, synthetic_run_2, deploy
):
    old, new = synthetic_run, synthetic_run_2
    uids, rows = validation_rows(old.output)
    assert np.abs(old.expected(uids) - new.expected(uids)).min() > 1e-4  # told apart per row
    url = deploy(old.output, "swap", replicas=2)
    runs = {str(old.output.resolve()): old, str(new.output.resolve()): new}
    load = Load(url, rows, lambda: raymix.serving.swap(new.output, app="swap", timeout=240))
    asyncio.run(load.run())

    assert load.swap_returned is not None and load.sent_after_swap == AFTER_SWAP, "load too short"
    failed = [(status, body) for *_, status, body in load.results if status != 200]
    assert not failed, failed[:3]
    by = {output: 0 for output in runs}
    for sent, answered, request_uids, _, body in load.results:
        assert isinstance(body, dict)
        output = body["output"]
        served = np.asarray([p["score"] for p in body["predictions"]])
        assert [p["uid"] for p in body["predictions"]] == request_uids
        np.testing.assert_allclose(served, runs[output].expected(request_uids), atol=1e-6, rtol=0)
        (other,) = set(runs) - {output}
        assert np.abs(served - runs[other].expected(request_uids)).min() > 1e-6
        if answered < load.swap_started:
            assert output == str(old.output.resolve())
        if sent > load.swap_returned:
            assert output == str(new.output.resolve())
        by[output] += 1
    assert (
        by[str(old.output.resolve())] >= SWAP_AFTER and by[str(new.output.resolve())] >= AFTER_SWAP
    )
    during = [r for r in load.results if r[0] < load.swap_returned and r[1] > load.swap_started]
    assert len(during) >= CONCURRENCY  # the swap happened under the load
