"""KubeRay manifests for raymix: render, validate against the CRDs, write.

A pure module: no Ray, no Kubernetes client. It turns a :class:`ClusterShape` (what the
manifests need, taken from a recipe's resources by the caller) into ``ray.io/v1``
``RayCluster`` and ``RayJob`` dicts, and checks any such manifest against the
``openAPIV3Schema`` of the KubeRay CRDs the way the API server would: unknown fields are
errors (the server would silently prune them), and so are wrong types, missing required
fields and names KubeRay refuses. CEL rules (``x-kubernetes-validations``) and the
operator's own checks beyond names are not evaluated.

Regenerate the committed examples in ``k8s/`` with ``python -m raymix.k8s`` (``--check``
only compares).
"""

from __future__ import annotations

import functools
import math
import os
import posixpath
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from raymix.errors import RecipeError
from raymix.files import write_text

API_VERSION = "ray.io/v1"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# KubeRay appends suffixes to build Service names (<= 63 characters), hence these limits
# (ray-operator/controllers/ray/utils/constant.go); names must be DNS-1035 labels.
MAX_NAME_LENGTH = {"RayCluster": 53, "RayJob": 47}
WORKER_GROUP = "workers"
MANIFEST_FILES = {"RayCluster": "raycluster.yaml", "RayJob": "rayjob.yaml"}
EXAMPLE_RECIPE = "recipes/movielens_lr.py"

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABELS = {"app.kubernetes.io/name": "raymix"}
# The rayproject/ray images run as user "ray" (uid 1000) in group "users" (gid 100).
_RAY_IMAGE_GID = 100
_HEAD_PORTS = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)]


@dataclass(frozen=True)
class ClusterShape:
    """What the manifests need: pod sizes, image, storage. Validated on construction.

    ``*_cpus`` and ``*_memory_gib`` become the containers' requests *and* limits (Guaranteed
    QoS). Ray's logical CPUs (``num-cpus``) are ``round(cpus * logical_cpus_factor)``: raymix
    oversubscribes small nodes (2 training workers on 2 cores starve Ray Data otherwise).
    ``/dev/shm`` is a memory ``emptyDir`` of ``object_store_fraction * memory``, and Ray's
    ``object-store-memory`` is set to the same size. ``data_pvc`` is a ReadWriteMany claim
    mounted at ``mount_path`` on the head and every worker, for data and outputs; use
    ``None`` when they live on an object store (``s3://...``). ``max_workers`` above
    ``workers`` turns on KubeRay's in-tree autoscaler. Relative recipe paths resolve against
    ``app_dir``, where ``k8s/Dockerfile`` puts the repository.
    """

    workers: int = 2
    worker_cpus: float = 2
    worker_memory_gib: float = 8
    head_cpus: float = 2
    head_memory_gib: float = 8
    image: str = "raymix:0.1.0"
    namespace: str = "default"
    data_pvc: str | None = "raymix-data"
    mount_path: str = "/data"
    ray_version: str = "2.60.0"
    service_account: str | None = None
    logical_cpus_factor: float = 2.0
    object_store_fraction: float = 0.3
    max_workers: int | None = None
    app_dir: str = "/opt/raymix"

    def __post_init__(self):
        def bad(field, expected):
            value = getattr(self, field)
            raise RecipeError(f"must be {expected}; got {value!r}", field=f"ClusterShape.{field}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        if not is_int(self.workers) or self.workers < 0:
            bad("workers", "an integer >= 0")
        if self.max_workers is not None and (
            not is_int(self.max_workers) or self.max_workers < self.workers
        ):
            bad("max_workers", f"None or an integer >= workers ({self.workers})")
        for field in ("worker_cpus", "worker_memory_gib", "head_cpus", "head_memory_gib"):
            if not is_num(getattr(self, field)) or getattr(self, field) <= 0:
                bad(field, "a number > 0")
        if not is_num(self.logical_cpus_factor) or self.logical_cpus_factor < 1:
            bad("logical_cpus_factor", "a number >= 1")
        if not is_num(self.object_store_fraction) or not 0 < self.object_store_fraction <= 0.8:
            bad("object_store_fraction", "a number in (0, 0.8]")
        for field in ("image", "ray_version"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field).strip():
                bad(field, "a non-empty string")
        if not isinstance(self.namespace, str) or not _DNS1123_LABEL.match(self.namespace):
            bad("namespace", "a DNS-1123 label (lowercase letters, digits, '-')")
        for field in ("data_pvc", "service_account"):
            value = getattr(self, field)
            if value is not None and (
                not isinstance(value, str) or not _DNS1123_SUBDOMAIN.match(value)
            ):
                bad(field, "None or a DNS-1123 name (lowercase letters, digits, '-', '.')")
        for field in ("mount_path", "app_dir"):
            value = getattr(self, field)
            if not isinstance(value, str) or not posixpath.isabs(value) or value == "/":
                bad(field, "an absolute POSIX path other than '/'")
        if posixpath.normpath(self.mount_path) == "/dev/shm":
            bad("mount_path", "a path other than /dev/shm (used by Ray's object store)")


# ---------------------------------------------------------------------------- rendering


def _cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def _memory_quantity(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"


def _logical_cpus(cpus: float, shape: ClusterShape) -> str:
    return str(max(1, round(cpus * shape.logical_cpus_factor)))


def _object_store_mib(memory_gib: float, shape: ClusterShape) -> int:
    return max(128, int(memory_gib * 1024 * shape.object_store_fraction))


def _check_name(name: str, kind: str) -> None:
    limit = MAX_NAME_LENGTH[kind]
    if not isinstance(name, str) or not _DNS1035_LABEL.match(name) or len(name) > limit:
        raise RecipeError(
            f"a {kind} name must be a DNS-1035 label of at most {limit} characters (lowercase "
            f"letters, digits and '-', starting with a letter, ending with a letter or digit); "
            f"got {name!r}",
            field="name",
        )


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
    _check_name(name, "RayCluster")
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
    _check_name(name, "RayJob")
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


# ---------------------------------------------------------------------------- validation

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_COPIED = (
    "type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "maxProperties", "multipleOf", "required",
    "default", "x-kubernetes-list-map-keys",
)  # fmt: skip


def _to_json_schema(node: dict, *, in_junction: bool = False) -> dict:
    """Translate the Kubernetes structural-schema subset of OpenAPI v3 to JSON Schema.

    Objects that list ``properties`` (or none, and no ``additionalProperties``) get
    ``additionalProperties: false`` unless ``x-kubernetes-preserve-unknown-fields``: the API
    server prunes such fields, so a manifest carrying them does not mean what it says.
    """
    out = {k: node[k] for k in _COPIED if k in node}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "anyOf" in node:
        out["anyOf"] = [_to_json_schema(s, in_junction=True) for s in node["anyOf"]]
    for key in ("allOf", "oneOf"):
        if key in node:
            out[key] = [_to_json_schema(s, in_junction=True) for s in node[key]]
    if "not" in node:
        out["not"] = _to_json_schema(node["not"], in_junction=True)
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("format") in _INT_RANGES and node.get("type") == "integer":
        low, high = _INT_RANGES[node["format"]]
        out["minimum"] = max(out.get("minimum", low), low)
        out["maximum"] = min(out.get("maximum", high), high)
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    properties = dict(node.get("properties", {}))
    if node.get("x-kubernetes-embedded-resource"):
        for key in ("apiVersion", "kind"):
            properties.setdefault(key, {"type": "string"})
        loose = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        properties.setdefault("metadata", loose)
    if properties:
        out["properties"] = {k: _to_json_schema(v) for k, v in properties.items()}
    if isinstance(node.get("items"), dict):
        out["items"] = _to_json_schema(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _to_json_schema(extra)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif not preserve and not in_junction and (properties or node.get("type") == "object"):
        out["additionalProperties"] = False
    return out


def _object_meta(kind: str) -> dict:
    """The part of ObjectMeta a manifest may carry (the CRD only says ``type: object``)."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "pattern": _DNS1035_LABEL.pattern,
                "maxLength": MAX_NAME_LENGTH[kind],
            },
            "namespace": {"type": "string", "pattern": _DNS1123_LABEL.pattern, "maxLength": 63},
            "labels": string_map,
            "annotations": string_map,
        },
    }


def _list_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-type: map``: items must be unique by their key fields."""
    if not validator.is_type(instance, "array"):
        return
    from jsonschema.exceptions import ValidationError

    item_props = schema.get("items", {}).get("properties", {})
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(repr(item.get(k, item_props.get(k, {}).get("default"))) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))
            yield ValidationError(f"duplicate entry ({shown}) also at [{seen[key]}]", path=[i])
        else:
            seen[key] = i


@functools.lru_cache(maxsize=8)
def _validator(crd_path: str, kind: str):
    import jsonschema

    try:
        with open(crd_path, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        crd_kind = crd["spec"]["names"]["kind"]
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        schema = _to_json_schema(versions["v1"]["schema"]["openAPIV3Schema"])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        message = f"cannot read the v1 schema from {crd_path}: {exc!r}"
        raise RecipeError(message, field="crd_dir") from exc
    if crd_kind != kind:
        raise RecipeError(f"{crd_path} defines {crd_kind}, not {kind}", field="crd_dir")
    schema["properties"].update(
        apiVersion={"const": API_VERSION}, kind={"const": kind}, metadata=_object_meta(kind)
    )
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    cls = jsonschema.validators.extend(
        jsonschema.Draft202012Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
    )
    return cls(schema)


def _json_path(parts: Sequence) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", p):
            out += f".{p}" if out else p
        else:
            out += f"[{p!r}]"
    return out


def _document_order(manifest, parts: Sequence) -> list[int]:
    """Sort key putting errors in the order their location appears in the manifest."""
    key, node = [], manifest
    for p in parts:
        if isinstance(node, dict) and p in node:
            key.append(list(node).index(p))
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            key.append(p)
        else:
            key.append(1 << 30)
            break
        node = node[p]
    return key


def _explain(error, kind: str) -> tuple[list, str]:
    """The JSON path and message of one jsonschema error, phrased for a manifest."""
    parts = list(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        unknown = [k for k in error.instance if k not in known]
        return parts + unknown[:1], (
            f"unknown field, not in the {kind} {API_VERSION} schema (the API server would drop it)"
        )
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        name = next((r for r in missing if repr(r) in error.message), missing[0])
        return parts + [name], "required field is missing"
    if error.validator == "pattern" and error.validator_value == _QUANTITY_PATTERN:
        return parts, f"{error.instance!r} is not a Kubernetes quantity such as '2', '500m', '8Gi'"
    if parts == ["metadata", "name"] and error.validator in ("pattern", "maxLength"):
        return parts, (
            f"must be a DNS-1035 label of at most {MAX_NAME_LENGTH[kind]} characters "
            f"(lowercase letters, digits and '-', starting with a letter, ending with a "
            f"letter or digit); got {error.instance!r}"
        )
    return parts, error.message


def validate_manifest(manifest: dict, crd_dir: Path) -> None:
    """Check a RayCluster or RayJob manifest against the ``v1`` schema of its KubeRay CRD.

    ``crd_dir`` holds ``ray.io_rayclusters.yaml`` and ``ray.io_rayjobs.yaml``. Raises
    :class:`RecipeError` whose ``field`` is the JSON path of the first problem in document
    order (e.g. ``spec.rayClusterSpec.workerGroupSpecs[0].replicas``).
    """
    if not isinstance(manifest, dict):
        raise RecipeError(f"a manifest must be a mapping; got {type(manifest).__name__}")
    if manifest.get("apiVersion") != API_VERSION:
        got = manifest.get("apiVersion")
        raise RecipeError(f"must be {API_VERSION!r}; got {got!r}", field="apiVersion")
    kind = manifest.get("kind")
    if kind not in CRD_FILES:
        raise RecipeError(f"must be one of {sorted(CRD_FILES)}; got {kind!r}", field="kind")
    crd_path = Path(crd_dir) / CRD_FILES[kind]
    if not crd_path.is_file():
        raise RecipeError(f"no {CRD_FILES[kind]} in {crd_dir}", field="crd_dir")
    validator = _validator(str(crd_path.resolve()), kind)
    errors = [_explain(e, kind) for e in validator.iter_errors(manifest)]
    if not errors:
        return
    errors.sort(key=lambda e: (_document_order(manifest, e[0]), e[1]))
    parts, message = errors[0]
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise RecipeError(message, field=_json_path(parts) or kind)


# ---------------------------------------------------------------------------- writing


def _header(recipe_path: str) -> str:
    shown = " ".join(recipe_path.splitlines())  # a comment must stay on one line
    return f"# Rendered by raymix.k8s for {shown}; re-render rather than edit by hand.\n"


def _render_pair(name, recipe_path, shape, **job_options) -> dict[str, tuple[dict, str]]:
    manifests = [
        render_raycluster(name, shape),
        render_rayjob(name, recipe_path, shape, **job_options),
    ]
    return {MANIFEST_FILES[m["kind"]]: (m, _header(recipe_path) + to_yaml(m)) for m in manifests}


def write_manifests(
    out_dir,
    name: str,
    recipe_path: str,
    shape: ClusterShape,
    *,
    fit_args: Sequence[str] = (),
    runtime_env: dict | None = None,
    shutdown_after_finish: bool = True,
    ttl_seconds: int = 600,
    crd_dir: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``raycluster.yaml`` and ``rayjob.yaml`` into ``out_dir`` (created if missing).

    Both are rendered, and validated when ``crd_dir`` is given, before either is written;
    each is written to a temporary file then renamed. Existing manifests are refused unless
    ``overwrite``. Returns the two paths.
    """
    rendered = _render_pair(
        name,
        recipe_path,
        shape,
        fit_args=fit_args,
        runtime_env=runtime_env,
        shutdown_after_finish=shutdown_after_finish,
        ttl_seconds=ttl_seconds,
    )
    if crd_dir is not None:
        for manifest, _ in rendered.values():
            validate_manifest(manifest, crd_dir)
    out = Path(out_dir)
    paths = [out / filename for filename in rendered]
    if not overwrite:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise RecipeError(
                f"{', '.join(existing)} already exist; pass overwrite=True (raymix k8s render --overwrite) to replace them",
                field="out_dir",
            )
    out.mkdir(parents=True, exist_ok=True)
    for path, (_, text) in zip(paths, rendered.values(), strict=True):
        write_text(path, text)
    return paths


def name_for_recipe(recipe_path: str) -> str:
    """``raymix-<recipe stem>`` as a DNS-1035 label short enough for a RayJob."""
    stem = PurePosixPath(recipe_path.replace(os.sep, "/")).stem.lower()
    stem = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")
    return f"raymix-{stem}"[: MAX_NAME_LENGTH["RayJob"]].rstrip("-")


def render_for_recipe(
    recipe_path: str,
    out_dir,
    shape: ClusterShape,
    fit_args: Sequence[str] = (),
    *,
    name: str | None = None,
    runtime_env: dict | None = None,
    crd_dir: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """What ``raymix k8s render`` calls: :func:`write_manifests` named after the recipe.

    The recipe is not read here: it is run inside the image (``shape.app_dir``) or from the
    shared volume, so ``recipe_path`` is the path as the pods see it.
    """
    return write_manifests(
        out_dir,
        name or name_for_recipe(recipe_path),
        recipe_path,
        shape,
        fit_args=fit_args,
        runtime_env=runtime_env,
        crd_dir=crd_dir,
        overwrite=overwrite,
    )


def example_manifests() -> dict[str, str]:
    """The text of the committed ``k8s/*.yaml``: ``recipes/movielens_lr.py``, 2 workers."""
    rendered = _render_pair(name_for_recipe(EXAMPLE_RECIPE), EXAMPLE_RECIPE, ClusterShape())
    return {filename: text for filename, (_, text) in rendered.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m raymix.k8s [--check] [DIR]``: regenerate (or compare) the examples."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    out = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "k8s"
    stale = []
    for filename, text in example_manifests().items():
        path = out / filename
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
    verb = "out of date" if check else "written"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
