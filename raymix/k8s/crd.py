"""Check a ``RayCluster`` or ``RayJob`` manifest against the KubeRay CRDs, as the API server would.

The ``openAPIV3Schema`` of each CRD becomes a JSON Schema: unknown fields are errors (the
server would silently prune them), and so are wrong types, missing required fields and
names KubeRay refuses. CEL rules (``x-kubernetes-validations``) and the operator's own
checks beyond names are not evaluated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from raymix.errors import RecipeError
from raymix.k8s.names import API_VERSION, DNS1035_LABEL, DNS1123_LABEL, MAX_NAME_LENGTH

CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}

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
                "pattern": DNS1035_LABEL.pattern,
                "maxLength": MAX_NAME_LENGTH[kind],
            },
            "namespace": {"type": "string", "pattern": DNS1123_LABEL.pattern, "maxLength": 63},
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
