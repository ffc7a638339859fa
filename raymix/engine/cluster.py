"""Starting or joining Ray: the one place raymix calls ``ray.init``.

Local runs start an embedded Ray sized to the machine: logical CPUs oversubscribed (2x the
cores, so long-lived state actors and Ray Data tasks never starve each other on a 2-core
laptop) and a modest object store. ``--address`` / ``RAY_ADDRESS`` joins a cluster instead:
``auto`` (the cluster this machine belongs to, e.g. inside a ``ray job submit`` job) or a GCS
``host:port``. A dashboard ``http://`` address and Ray Client ``ray://`` addresses are
refused with a one-line hint (Ray Data's streaming executor does not run under Ray Client),
and an address that cannot be reached fails fast with a one-line error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
import weakref
from pathlib import Path

from raymix.errors import RecipeError
from raymix.recipe.spec import Resources

OVERSUBSCRIBE = 2


def physical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_object_store_bytes() -> int:
    """A quarter of the available memory, between 512 MiB and 8 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        total = 8 << 30
    return int(min(max(total // 4, 512 << 20), 8 << 30))


@contextlib.contextmanager
def ray_session(
    resources: Resources, address: str | None = None, quiet: bool | None = None, meanwhile=None
):
    """Yield with Ray initialised; shut it down afterwards only if this call started it.

    ``meanwhile`` (a function of no arguments: the imports the run will need) runs in a
    thread while Ray starts: ``ray.init`` mostly waits for its processes, and importing Ray
    Data, Ray Train and the solvers costs the driver ~1 s on 2 cores. Its errors are raised.
    """
    import ray

    quiet_environment()
    quiet = not verbose() if quiet is None else quiet
    address = check_address(requested_address(address, resources))
    errors: list[BaseException] = []
    helper = None
    if meanwhile is not None:
        helper = threading.Thread(target=_capture, args=(meanwhile, errors), daemon=True)
        helper.start()
    started = False
    try:
        if not ray.is_initialized():
            _start(ray, resources, address, quiet)
            started = True
    finally:
        if helper is not None:
            helper.join()
    try:
        if errors:
            raise errors[0]
        yield ray
    finally:
        if started:
            if not address:
                _stop_autoscaler_monitor()
            ray.shutdown()


def _capture(function, errors: list) -> None:
    # at the lowest priority: Ray's start is CPU-bound too (its agents start on the same 2
    # cores) and waited ~1 s longer one time in two when this thread competed at par
    with contextlib.suppress(AttributeError, OSError):  # per-thread niceness is Linux's
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        function()
    except BaseException as exc:  # re-raised by the caller's thread
        errors.append(exc)


def _start(ray, resources: Resources, address: str | None, quiet: bool) -> None:
    if address:
        _join(ray, address, quiet)
        return
    object_store = int(resources.object_store_gib * (1 << 30)) or default_object_store_bytes()
    ray.init(
        num_cpus=resources.num_cpus or OVERSUBSCRIBE * physical_cores(),
        object_store_memory=object_store,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=not quiet,
        configure_logging=True,
    )


def _stop_autoscaler_monitor() -> None:
    """Kill the autoscaler monitor of the local Ray this process started.

    ``ray.shutdown`` stops the GCS first and then sends the monitor SIGTERM, whose handler
    tries to report to the GCS that is gone: every local run waited 1 s for Ray to give up and
    SIGKILL it. A single-machine Ray has nothing to autoscale, so the monitor goes first.
    """
    import psutil

    for child in psutil.Process().children():
        try:
            if any(arg.endswith("autoscaler/_private/monitor.py") for arg in child.cmdline()):
                child.kill()
        except psutil.Error:  # already gone
            pass


def requested_address(address: str | None, resources: Resources) -> str | None:
    """The Ray cluster a run asks for: ``address`` (``--address``), else the recipe's, else
    ``RAY_ADDRESS``; None or empty means the embedded local Ray."""
    return address or resources.address or os.environ.get("RAY_ADDRESS")


def check_address(address: str | None, reach: bool = False) -> str | None:
    """The address to join (``None``: start a local Ray); refuse the forms raymix cannot use.

    With ``reach``, also check that something listens at a ``host:port`` address (the CLI
    does, before it writes anything).
    """
    address = (address or "").strip() or None
    if address is None or address == "auto":
        return address
    if address.startswith(("http://", "https://")):
        raise RecipeError(
            f"'{address}' is a dashboard (job submission) address, not a Ray cluster address: "
            f"run 'ray job submit --address {address} -- raymix fit RECIPE --address auto', "
            "or pass the head's GCS address (host:6379), or unset RAY_ADDRESS",
            field="address",
        )
    if address.startswith("ray://"):
        raise RecipeError(
            f"'{address}': Ray Client (ray://) is not supported, because Ray Data needs its "
            "driver on the cluster: submit the fit as a job instead "
            "('ray job submit --address http://HEAD:8265 -- raymix fit RECIPE --address auto')",
            field="address",
        )
    if "://" in address:
        raise RecipeError(
            f"'{address}' is not a Ray cluster address (host:port or auto)", field="address"
        )
    if reach:
        _check_reachable(address)
    return address


def _join(ray, address: str, quiet: bool) -> None:
    """``ray.init(address)``, but fail in seconds, in one line, when nobody answers there.

    An explicit address wins over ``RAY_ADDRESS`` (Ray itself prefers the environment).
    """
    saved = os.environ.get("RAY_ADDRESS")
    if address != "auto":
        _check_reachable(address)
        os.environ["RAY_ADDRESS"] = address
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=not quiet)
    except Exception as exc:  # ConnectionError, ValueError, AuthenticationError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConnectionError(
            f"cannot join the Ray cluster at '{address}': {first} (is the cluster up, and are "
            "RAY_AUTH_MODE / the auth token the same as the cluster's?)"
        ) from None
    finally:
        if address != "auto":
            if saved is None:
                os.environ.pop("RAY_ADDRESS", None)
            else:
                os.environ["RAY_ADDRESS"] = saved


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to the GCS ``host:port`` (``ray.init`` itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise RecipeError(
            f"'{address}' is not a Ray cluster address: use host:port (the head's GCS port, "
            "6379 by default) or auto",
            field="address",
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConnectionError(
            f"cannot reach a Ray cluster at '{address}': {reason} (start one with 'ray start "
            f"--head --port={port}', or check the host and port)"
        ) from None


def spread_actor_options(n: int, owner) -> list[dict]:
    """Ray options putting ``n`` zero-CPU actors on as many nodes as possible.

    Ray's ``SPREAD`` strategy and soft node affinity do not reliably spread zero-CPU actors
    (measured on a two-node cluster: both actors on one node in about half the tries). A
    ``SPREAD`` placement group does, and when a node is lost Ray reschedules its bundles and
    restarts the actors there. Its bundles hold 1 byte of ``memory`` each, no CPU, so nothing
    is taken from training or reading tasks. The group is removed when ``owner`` (the pool
    holding the actors) is garbage-collected. On one node, or if the group cannot be placed
    within a minute, the actors just get the ``SPREAD`` strategy (explicit, so an enclosing
    placement group, a Tune trial's, does not capture them).
    """
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    best_effort = [{"scheduling_strategy": "SPREAD"}] * n
    if n < 2 or sum(1 for node in ray.nodes() if node["Alive"]) < 2:
        return best_effort
    group = placement_group([{"memory": 1}] * n, strategy="SPREAD")
    try:
        ray.get(group.ready(), timeout=60)
    except Exception:  # e.g. GetTimeoutError: no room for the bundles
        _remove_group(group)
        return best_effort
    weakref.finalize(owner, _remove_group, group)
    return [
        {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=i
            )
        }
        for i in range(n)
    ]


def _remove_group(group) -> None:
    import ray
    from ray.util.placement_group import remove_placement_group

    if ray.is_initialized():
        with contextlib.suppress(Exception):
            remove_placement_group(group)


VERBOSE = "RAYMIX_VERBOSE"  # set (by ``--verbose``): Ray's own log lines are shown


def verbose() -> bool:
    """Whether Ray's log lines are shown (``--verbose``); by default a run prints none."""
    return os.environ.get(VERBOSE, "") not in ("", "0")


def quiet_environment() -> None:
    """Environment for this process and the Ray workers it starts (they inherit it).

    Unless :func:`verbose`, Ray Data logs to its session file only (ray_data_logging.yaml),
    Ray Train and Ray Core below WARNING nowhere; the workers inherit the setting.
    """
    # Arrow's default mimalloc pool keeps freed pages: an idle worker that once routed a
    # 1M-row file held ~0.3 GiB more than with the system allocator, at the same speed.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    config = str(Path(__file__).with_name("ray_data_logging.yaml"))
    if not verbose():
        os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", config)
    elif os.environ.get("RAY_DATA_LOGGING_CONFIG") == config:  # inherited from a quiet parent
        del os.environ["RAY_DATA_LOGGING_CONFIG"]
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if not verbose():  # Ray's notice, on every local start, that it chose token auth
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
