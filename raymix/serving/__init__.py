"""``raymix serve``: a trained run answering ``POST /predict`` on Ray Serve.

::

    import raymix.serving

    url = raymix.serving.serve("out/movielens-lr", port=8000)   # Ray Serve on 127.0.0.1
    raymix.serving.swap("out/movielens-lr-2")                   # every replica, atomically
    raymix.serving.shutdown()

The models are held by :mod:`raymix.serving.model` (no Ray), requests are checked by
:mod:`raymix.serving.requests` (no Ray), and :mod:`raymix.serving.app` is the deployment.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import cast

from raymix.errors import RaymixError

__all__ = ["serve", "swap", "shutdown"]

APP = "raymix"


def serve(
    output: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    replica_cpus: float = 0.0,
    app: str = APP,
    route_prefix: str = "/",
    timeout: float = 600.0,
) -> str:
    """Deploy the run in ``output`` (a fit's output directory) as the Serve application
    ``app`` and return its URL once every replica has loaded it (at most ``timeout``
    seconds). Ray must be initialised (``ray.init`` or ``ray_session``); Serve is started on
    ``host:port`` unless it already runs (then its own HTTP options stay).

    ``replica_cpus`` is each replica's Ray CPU reservation: 0 on a small machine, so that the
    replicas never wait for a CPU that Ray Serve's own proxy and controller hold.
    """
    import ray
    from ray import serve as ray_serve

    from raymix.serving.app import NAMESPACE, RunBoard, Scorer, board_name
    from raymix.serving.model import check_run

    if replicas < 1:
        raise RaymixError(f"replicas must be at least 1, got {replicas}")
    output = str(check_run(output))
    ray_serve.start(http_options={"host": host, "port": port})
    name = board_name(app)
    with contextlib.suppress(ValueError):  # a previous deployment's board
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    options = RunBoard.options  # type: ignore[attr-defined]
    board = options(name=name, namespace=NAMESPACE, lifetime="detached").remote(output)
    ray.get(board.current.remote())
    deployment = Scorer.options(  # type: ignore[attr-defined]
        num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus}
    )
    # not serve.run: it waits without a bound, and a replica that cannot load the run
    # would be retried for minutes before it says why
    ray_serve._run(
        deployment.bind(app, route_prefix), name=app, route_prefix=route_prefix, _blocking=False
    )
    _wait_running(ray_serve, app, timeout)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"


def _wait_running(ray_serve, app: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = ray_serve.status().applications.get(app)
        state = str(status.status) if status is not None else "NOT_STARTED"
        if state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
            message = " ".join(str(status.message).split())[:500]
            ray_serve.delete(app)
            raise RaymixError(f"the raymix serve application could not start: {message}")
        if time.monotonic() > deadline:
            ray_serve.delete(app)
            raise RaymixError(f"the raymix serve application was not running after {timeout:.0f} s")
        time.sleep(0.2)


def swap(output: str | Path, *, app: str = APP, timeout: float = 600.0) -> dict:
    """Serve the run in ``output`` instead: every replica loads it beside the run it serves
    and then switches; returns when all have (a replica that cannot load it keeps the old
    run, and this raises naming the reason)."""
    import ray
    from ray import serve as ray_serve

    from raymix.serving.app import NAMESPACE, board_name
    from raymix.serving.model import check_run

    output = str(check_run(output))
    try:
        board = ray.get_actor(board_name(app), namespace=NAMESPACE)
    except ValueError:
        raise RaymixError(f"no raymix serve application '{app}' is running here") from None
    generation = cast(int, ray.get(board.publish.remote(output)))
    deadline = time.monotonic() + timeout
    while True:
        status = ray.get(board.status.remote())
        running = _running_replicas(ray_serve, app)
        done = {r: a for r, a in status["acks"].items() if a[0] >= generation}
        failed = {r: a[1] for r, a in done.items() if a[1]}
        if failed:
            replica, reason = next(iter(failed.items()))
            raise RaymixError(f"replica {replica} could not load {output}: {reason}")
        if len(done) >= running:
            return {"output": output, "generation": generation, "replicas": len(done)}
        if time.monotonic() > deadline:
            raise RaymixError(
                f"swap to {output}: {len(done)} of {running} replicas switched in {timeout:.0f} s"
            )
        time.sleep(0.1)


def shutdown(app: str = APP) -> None:
    """Delete the application ``app`` and its board (Serve itself keeps running)."""
    import ray
    from ray import serve as ray_serve

    from raymix.serving.app import NAMESPACE, board_name

    ray_serve.delete(app)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(board_name(app), namespace=NAMESPACE))


def _running_replicas(ray_serve, app: str) -> int:
    deployments = ray_serve.status().applications[app].deployments
    return sum(d.replica_states.get("RUNNING", 0) for d in deployments.values())
