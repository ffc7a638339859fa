"""The Ray Serve application of ``raymix serve``: thin, over :mod:`.model` and :mod:`.requests`.

Routes (one deployment, :class:`Scorer`, ``route_prefix="/"``):

    POST /predict   {"rows": [...]} -> {"run", "output", "predictions": [{score, coordinates,
                    probability, uid}]}; 400 {"error": "<field>: <reason>"} for a bad request
                    columnar (:mod:`.columnar`): {"columns": {...}} or an Arrow IPC stream
                    (Content-Type application/vnd.apache.arrow.stream) -> JSON {"run",
                    "output", "scores": [...], "coordinates": {name: [...]}, "probability":
                    [...], "uid": [...]} (probability for a logistic run, uid when given);
                    either form answered as an Arrow IPC stream instead on Accept:
                    application/vnd.apache.arrow.stream (:mod:`.responses`); 406 for an
                    Accept naming neither JSON nor Arrow
    GET  /healthz   {"status": "ok", "run"}
    GET  /          the run being served, its coordinates, the replica's memory and load time

Requests are batched (``serve.batch``): the rows of the requests that arrive together are
parsed against one snapshot of the served run, stacked and scored at once. A request of
:data:`ALONE_ROWS` rows or more is a batch by itself: it is scored at once, without waiting
in the queue.

Swapping runs: a small named actor, :class:`RunBoard`, holds the output directory to serve
and a generation number. Each replica waits on it in a thread; when the generation moves it
loads the new run beside the one it serves, then replaces its reference in one assignment.
A batch reads that reference once, so every response is scored by exactly one run; a run
that fails to load is reported and the old one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import ray
from ray import serve

from raymix.serving.columnar import Columns, parse_request, read_columns
from raymix.serving.model import ServedRun, load_run
from raymix.serving.requests import RequestError, concat_batches, parse_rows
from raymix.serving.responses import Answer, NotAcceptable, accepted, body

NAMESPACE = "raymix-serve"
MAX_BATCH = 32  # requests scored together
BATCH_WAIT_S = 0.002
ALONE_ROWS = 256  # a request of this many rows skips the batch queue (and its wait)


@ray.remote(num_cpus=0)
class RunBoard:
    """Which run the replicas of one application serve (async actor: waits cost nothing)."""

    def __init__(self, output: str):
        self.output = output
        self.generation = 0
        self.acks: dict[str, tuple[int, str | None]] = {}
        self.changed: asyncio.Event | None = None

    async def current(self) -> tuple[int, str]:
        return self.generation, self.output

    async def wait_newer(self, generation: int, timeout: float) -> tuple[int, str]:
        if self.changed is None:
            self.changed = asyncio.Event()
        changed = self.changed
        if self.generation <= generation:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        return self.generation, self.output

    async def publish(self, output: str) -> int:
        self.output = output
        self.generation += 1
        if self.changed is not None:  # wake every waiter, and start a new event
            self.changed.set()
            self.changed = None
        return self.generation

    async def ack(self, replica: str, generation: int, error: str | None = None) -> None:
        self.acks[replica] = (generation, error)

    async def status(self) -> dict:
        return {"generation": self.generation, "output": self.output, "acks": dict(self.acks)}


def board_name(app: str) -> str:
    return f"raymix-board-{app}"


@serve.deployment(max_ongoing_requests=64, health_check_period_s=5)
class Scorer:
    """One replica: the served run, its batched scoring, and a thread watching the board."""

    def __init__(self, app: str, route_prefix: str = "/"):
        self.prefix = route_prefix.rstrip("/")
        self.board = ray.get_actor(board_name(app), namespace=NAMESPACE)
        self.replica = serve.get_replica_context().replica_id.unique_id
        generation: int
        output: str
        generation, output = ray.get(self.board.current.remote())
        self.run: ServedRun = load_run(output)
        self.generation: int = generation
        ray.get(self.board.ack.remote(self.replica, generation))
        self._stop: threading.Event = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="raymix-board").start()

    def _watch(self) -> None:
        generation: int
        output: str
        while not self._stop.is_set():
            try:
                generation, output = ray.get(
                    self.board.wait_newer.remote(self.generation, 10.0), timeout=30
                )
            except Exception:  # the board is gone (shutting down) or slow: ask again
                time.sleep(0.5)
                continue
            if generation <= self.generation:
                continue
            try:
                new = load_run(output)  # beside the run being served
            except Exception as exc:
                self.generation = generation
                self.board.ack.remote(self.replica, generation, f"{type(exc).__name__}: {exc}")
                continue
            self.run, self.generation = new, generation  # one reference: the switch
            self.board.ack.remote(self.replica, generation)

    def __del__(self):
        self._stop.set()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _score(self, requests: list[list | Columns]) -> list:
        return self._score_now(requests)

    def _score_now(self, requests: list[list | Columns]) -> list:
        """Per request (its rows, or its :class:`Columns`) its :class:`~.responses.Answer`, or
        ``(status, message)``; a request that cannot be scored never fails the others of its
        batch."""
        run = self.run  # one snapshot for the whole batch: one run scores each response
        out: list = [None] * len(requests)
        parsed = []
        for k, given in enumerate(requests):
            try:
                if isinstance(given, Columns):
                    parsed.append((k, read_columns(given, run.layout), True))
                else:
                    parsed.append((k, parse_rows(given, run.layout), False))
            except RequestError as exc:
                out[k] = (400, exc.message)
            except Exception as exc:  # a bug, not the request: this request alone fails
                out[k] = (500, f"cannot read the request: {one_line(exc)}")
        try:
            _answer(run, parsed, out)
        except Exception:  # score them one by one: only a culprit fails
            for item in parsed:
                try:
                    _answer(run, [item], out)
                except Exception as exc:
                    out[item[0]] = (500, f"cannot score the request: {one_line(exc)}")
        return out

    async def __call__(self, request):
        from starlette.responses import JSONResponse, Response

        path = request.url.path
        if self.prefix and path.startswith(self.prefix):  # Serve leaves the prefix in the path
            path = path[len(self.prefix) :]
        path = path.rstrip("/") or "/"
        if path == "/predict":
            if request.method != "POST":
                return JSONResponse({"error": "POST a JSON body to /predict"}, status_code=405)
            try:
                form = accepted(request.headers.get("accept"))
                given = parse_request(await request.body(), request.headers.get("content-type", ""))
            except RequestError as exc:
                status = 406 if isinstance(exc, NotAcceptable) else 400
                return JSONResponse({"error": exc.message}, status_code=status)
            n = given.n if isinstance(given, Columns) else len(given)
            if n >= ALONE_ROWS:  # a batch already: scored now, not queued
                result = self._score_now([given])[0]
            else:
                result = await self._score(given)
            if isinstance(result, tuple):
                status, message = result
                return JSONResponse({"error": message}, status_code=status)
            return Response(body(result, form), media_type=form)
        if request.method != "GET":
            return JSONResponse({"error": f"{request.method} {path}: no such route"}, 405)
        if path == "/healthz":
            return JSONResponse({"status": "ok", "run": self.run.name})
        if path == "/":
            return JSONResponse(self.describe())
        return JSONResponse({"error": f"no route {path} (POST /predict, GET /healthz, GET /)"}, 404)

    def describe(self) -> dict:
        import psutil

        return {
            **self.run.describe(),
            "generation": self.generation,
            "replica": self.replica,
            "replica_memory_bytes": psutil.Process(os.getpid()).memory_info().rss,
        }


def _answer(run: ServedRun, parsed: list, out: list) -> None:
    """Score the parsed requests ``[(k, batch, columnar)]`` together: ``out[k]`` each one's
    :class:`~.responses.Answer`."""
    if not parsed:
        return
    batch = concat_batches([b for _, b, _ in parsed])
    scored = run.score(batch)
    start = 0
    for k, b, columnar in parsed:
        out[k] = Answer(run.name, run.output, batch, scored, start, start + b.n, columnar)
        start += b.n


def one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


@serve.deployment(max_ongoing_requests=64)
class Constant:
    """A bare deployment answering every request with a constant: Serve's own overhead, the
    floor a benchmark measures :class:`Scorer` against."""

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        await request.body()
        return JSONResponse({"predictions": [{"score": 0.0}]})
