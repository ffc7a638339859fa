"""The names Kubernetes and KubeRay accept, shared by the shape, the renderer and the CRD check."""

from __future__ import annotations

import re

from raymix.errors import RecipeError

API_VERSION = "ray.io/v1"
# KubeRay appends suffixes to build Service names (<= 63 characters), hence these limits
# (ray-operator/controllers/ray/utils/constant.go); names must be DNS-1035 labels.
MAX_NAME_LENGTH = {"RayCluster": 53, "RayJob": 47}

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_name(name: str, kind: str) -> None:
    """``name`` is a valid name for a ``kind`` (RayCluster or RayJob); else RecipeError."""
    limit = MAX_NAME_LENGTH[kind]
    if not isinstance(name, str) or not DNS1035_LABEL.match(name) or len(name) > limit:
        raise RecipeError(
            f"a {kind} name must be a DNS-1035 label of at most {limit} characters (lowercase "
            f"letters, digits and '-', starting with a letter, ending with a letter or digit); "
            f"got {name!r}",
            field="name",
        )
