"""Starting or joining Ray: the one place raymix calls ``ray.init``.

Local runs start an embedded Ray sized to the machine: logical CPUs oversubscribed (2x the
cores, so long-lived state actors and Ray Data tasks never starve each other on a 2-core
laptop) and a modest object store. ``--address`` / ``RAY_ADDRESS`` joins a cluster instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

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
def ray_session(resources: Resources, address: str | None = None, quiet: bool = True):
    """Yield with Ray initialised; shut it down afterwards only if this call started it."""
    import ray

    _quiet_environment()
    address = address or resources.address or os.environ.get("RAY_ADDRESS")
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=not quiet)
        else:
            object_store = (
                int(resources.object_store_gib * (1 << 30)) or default_object_store_bytes()
            )
            ray.init(
                num_cpus=resources.num_cpus or OVERSUBSCRIBE * physical_cores(),
                object_store_memory=object_store,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=not quiet,
                configure_logging=True,
            )
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _quiet_environment() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
