"""KubeRay manifests as dicts: a ``RayCluster`` and a ``RayJob`` from a :class:`ClusterShape`.

A pure module: no Ray, no Kubernetes client. The shape is what the manifests need, taken
from a recipe's resources by the caller; :mod:`raymix.k8s.crd` checks the result against
the KubeRay CRDs and :mod:`raymix.k8s.write` writes it.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Mapping, Sequence

import yaml

from raymix.errors import RecipeError
from raymix.k8s.names import API_VERSION, check_name
from raymix.k8s.shape import ClusterShape

WORKER_GROUP = "workers"

_LABELS = {"app.kubernetes.io/name": "raymix"}
# The rayproject/ray images run as user "ray" (uid 1000) in group "users" (gid 100).
_RAY_IMAGE_GID = 100
_HEAD_PORTS = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)]


def _cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def _memory_quantity(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"


def _logical_cpus(cpus: float, shape: ClusterShape) -> str:
    return str(max(1, round(cpus * shape.logical_cpus_factor)))


def _object_store_mib(memory_gib: float, shape: ClusterShape) -> int:
    return max(128, int(memory_gib * 1024 * shape.object_store_fraction))


def _group(shape: ClusterShape, *, head: bool) -> dict:
    cpus = shape.head_cpus if head else shape.worker_cpus
    memory = shape.head_memory_gib if head else shape.worker_memory_gib
    shm_mib = _object_store_mib(memory, shape)
    quantities = {"cpu": _cpu_quantity(cpus), "memory": _memory_quantity(memory)}
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mib}Mi"}}]
    if shape.data_pvc is not None:
        mounts.append({"name": "data", "mountPath": shape.mount_path})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": shape.data_pvc}})
    container: dict = {"name": "ray-head" if head else "ray-worker", "image": shape.image}
    if head:
        container["ports"] = [{"containerPort": p, "name": n} for n, p in _HEAD_PORTS]
    container.update(
        env=[{"name": "RAY_TRAIN_V2_ENABLED", "value": "1"}],
        resources={"requests": dict(quantities), "limits": dict(quantities)},
        volumeMounts=mounts,
        lifecycle={"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
    )
    pod_spec: dict = {"containers": [container], "volumes": volumes}
    if shape.data_pvc is not None:
        # Lets the image's non-root user write outputs to a fresh claim.
        pod_spec["securityContext"] = {
            "fsGroup": _RAY_IMAGE_GID,
            "fsGroupChangePolicy": "OnRootMismatch",
        }
    if shape.service_account is not None:
        pod_spec["serviceAccountName"] = shape.service_account
    start_params = {
        "num-cpus": _logical_cpus(cpus, shape),
        "object-store-memory": str(shm_mib * 1024 * 1024),
    }
    if head:
        start_params = {"dashboard-host": "0.0.0.0", **start_params}
    template = {"metadata": {"labels": dict(_LABELS)}, "spec": pod_spec}
    return {"rayStartParams": start_params, "template": template}


def _cluster_spec(shape: ClusterShape) -> dict:
    max_workers = shape.workers if shape.max_workers is None else shape.max_workers
    spec: dict = {"rayVersion": shape.ray_version}
    if max_workers > shape.workers:
        spec["enableInTreeAutoscaling"] = True
    worker_group = {
        "groupName": WORKER_GROUP,
        "replicas": shape.workers,
        "minReplicas": shape.workers,
        "maxReplicas": max_workers,
        **_group(shape, head=False),
    }
    spec["headGroupSpec"] = _group(shape, head=True)
    spec["workerGroupSpecs"] = [worker_group]
    return spec


def _metadata(name: str, shape: ClusterShape, annotations: Mapping[str, str] | None = None):
    metadata = {"name": name, "namespace": shape.namespace, "labels": dict(_LABELS)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def render_raycluster(name: str, shape: ClusterShape) -> dict:
    """A long-lived ``RayCluster`` (submit jobs to it with ``ray job submit``)."""
    check_name(name, "RayCluster")
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": _metadata(name, shape),
        "spec": _cluster_spec(shape),
    }


def _entrypoint(recipe_path: str, shape: ClusterShape, fit_args: Sequence[str]) -> str:
    if not isinstance(recipe_path, str) or not recipe_path.strip():
        raise RecipeError(f"must be a non-empty path; got {recipe_path!r}", field="recipe_path")
    if isinstance(fit_args, str) or not all(isinstance(a, str) for a in fit_args):
        raise RecipeError(f"must be a list of strings; got {fit_args!r}", field="fit_args")
    recipe = recipe_path.replace(os.sep, "/")
    if not posixpath.isabs(recipe):
        recipe = posixpath.normpath(posixpath.join(shape.app_dir, recipe))
    args = list(fit_args)
    if not any(a == "--address" or a.startswith("--address=") for a in args):
        # The job driver joins the RayJob's cluster instead of starting its own Ray.
        args = ["--address", "auto", *args]
    return shlex.join(["raymix", "fit", recipe, *args])


def render_rayjob(
    name: str,
    recipe_path: str,
    shape: ClusterShape,
    *,
    fit_args: Sequence[str] = (),
    runtime_env: dict | None = None,
    shutdown_after_finish: bool = True,
    ttl_seconds: int = 600,
) -> dict:
    """A ``RayJob`` running ``raymix fit <recipe_path> --address auto <fit_args>``.

    It embeds its own ``rayClusterSpec`` (the same as :func:`render_raycluster`), which
    KubeRay deletes ``ttl_seconds`` after the job ends when ``shutdown_after_finish``.
    ``runtime_env`` (a Ray runtime_env dict) goes in as ``runtimeEnvYAML``.
    """
    check_name(name, "RayJob")
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool) or ttl_seconds < 0:
        raise RecipeError(f"must be an integer >= 0; got {ttl_seconds!r}", field="ttl_seconds")
    if runtime_env is not None and not isinstance(runtime_env, dict):
        raise RecipeError(f"must be a dict or None; got {runtime_env!r}", field="runtime_env")
    spec: dict = {
        "entrypoint": _entrypoint(recipe_path, shape, fit_args),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": bool(shutdown_after_finish),
    }
    if shutdown_after_finish:
        spec["ttlSecondsAfterFinished"] = ttl_seconds
    if runtime_env:
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True)
    spec["rayClusterSpec"] = _cluster_spec(shape)
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": _metadata(name, shape, {"raymix/recipe": recipe_path}),
        "spec": spec,
    }


class _Dumper(yaml.SafeDumper):
    """Block style, and literal ``|`` blocks for multi-line strings (runtimeEnvYAML)."""


def _represent_str(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(manifest: dict) -> str:
    """The manifest as YAML, keys in insertion order; ``yaml.safe_load`` gives it back."""
    return yaml.dump(
        manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096
    )
