"""``raymix serve OUT`` and ``raymix serve --swap OUT2``: the command line of :mod:`raymix.serving`.

``raymix serve OUT`` starts (or joins, with ``--address``) Ray, deploys the run on Ray Serve
on ``--host:--port`` and answers until Ctrl-C or SIGTERM; it prints the URL and the Ray
address that ``raymix serve --swap OUT2 --address ADDR`` needs to make it serve another run.
Like ``raymix fit``, the console shows raymix's own lines only (``--verbose``: Ray's too).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from raymix.errors import RecipeError

__all__ = ["add_parser", "check_port", "check_replicas"]


def add_parser(sub) -> None:
    """The ``serve`` subcommand on the ``raymix`` parser's subparsers ``sub``."""
    serve = sub.add_parser(
        "serve", help="answer POST /predict for a trained run on Ray Serve (or --swap its run)"
    )
    serve.add_argument("output", nargs="?", help="the output directory of a fit (holds run.json)")
    serve.add_argument(
        "--swap",
        metavar="OUT2",
        default=None,
        help="make the running 'raymix serve' serve OUT2 instead: every replica loads it beside "
        "the run it serves, then switches (no request fails)",
    )
    serve.add_argument(
        "--address",
        default=None,
        help="Ray cluster to serve on (default: RAY_ADDRESS, else a local Ray); with --swap, "
        "the address 'raymix serve' printed",
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    serve.add_argument("--port", default="8000", help="HTTP port (default 8000)")
    serve.add_argument("--replicas", default="1", help="Serve replicas (default 1)")
    serve.add_argument("--quiet", action="store_true", help="no progress lines")
    serve.add_argument("--verbose", action="store_true", help="show Ray's own log lines too")
    serve.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    serve.set_defaults(handler=run_command)


def check_port(text: str, host: str) -> int:
    """``--port`` as an int, free on ``host`` (checked by binding it)."""
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise RecipeError(f"expected an integer in 1..65535, got '{text}'", field="--port")
    port = int(text)
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise RecipeError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc})", field="--port"
            ) from None
    return port


def check_replicas(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise RecipeError(f"expected an integer >= 1, got '{text}'", field="--replicas")
    return int(text)


def run_command(args) -> int:
    if args.swap and args.output:
        raise RecipeError("give OUT (to serve it) or --swap OUT2 (to a running serve), not both")
    if args.swap:
        return _swap(args)
    if not args.output:
        raise RecipeError("raymix serve needs the output directory of a fit (or --swap OUT2)")
    return _serve(args)


def _say(quiet: bool):
    start = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _quiet_serve_logs() -> None:
    import logging

    from raymix.engine.cluster import verbose

    if not verbose():  # "Started Serve in namespace...", "Deploying app..." on every start
        logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _serve(args) -> int:
    import ray

    from raymix.engine.cluster import check_address, ray_session, requested_address
    from raymix.outputs import load_run
    from raymix.serving import serve, shutdown
    from raymix.serving.model import check_run

    output = check_run(args.output)
    recipe = load_run(output)
    replicas = check_replicas(args.replicas)
    port = check_port(args.port, args.host)
    check_address(requested_address(args.address, recipe.resources), reach=True)
    say = _say(args.quiet)
    _quiet_serve_logs()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ray_session(recipe.resources, args.address):
        from ray import serve as ray_serve

        say(f"loading {output} on {replicas} replica(s)")
        try:
            url = serve(output, host=args.host, port=port, replicas=replicas)
            address = ray.get_runtime_context().gcs_address
            print(f"serving '{recipe.name}' from {output} at {url}/predict", flush=True)
            print(f"swap: raymix serve --swap OUT2 --address {address}", flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            say("stopping")
        finally:
            shutdown()
            ray_serve.shutdown()
    return 0


def _swap(args) -> int:
    from raymix.engine.cluster import ray_session
    from raymix.outputs import load_run
    from raymix.serving import swap
    from raymix.serving.model import check_run

    output = check_run(args.swap)
    recipe = load_run(output)
    address = args.address or _environment_address() or "auto"
    say = _say(args.quiet)
    _quiet_serve_logs()
    with ray_session(recipe.resources, address):
        say(f"swapping to {output}")
        done = swap(output)
    print(
        f"now serving '{recipe.name}' from {Path(done['output'])} on {done['replicas']} replica(s)"
    )
    return 0


def _environment_address() -> str | None:
    import os

    return os.environ.get("RAY_ADDRESS") or None
