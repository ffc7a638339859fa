"""KubeRay manifests for raymix: render, validate against the CRDs, write.

* :mod:`raymix.k8s.shape`: :class:`ClusterShape`, what the manifests need (pod sizes,
  image, storage), checked on construction;
* :mod:`raymix.k8s.render`: ``ray.io/v1`` ``RayCluster`` and ``RayJob`` dicts, and YAML;
* :mod:`raymix.k8s.crd`: a manifest checked against the KubeRay CRDs' schemas;
* :mod:`raymix.k8s.write`: the manifests of a recipe written to a directory (what
  ``raymix k8s render`` does), and the committed examples in ``k8s/``
  (``python -m raymix.k8s [--check]``).

No Ray and no Kubernetes client here.
"""

from raymix.k8s.crd import validate_manifest
from raymix.k8s.render import WORKER_GROUP, render_raycluster, render_rayjob, to_yaml
from raymix.k8s.shape import ClusterShape
from raymix.k8s.write import (
    example_manifests,
    main,
    name_for_recipe,
    render_for_recipe,
    write_manifests,
)

__all__ = [
    "WORKER_GROUP",
    "ClusterShape",
    "example_manifests",
    "main",
    "name_for_recipe",
    "render_for_recipe",
    "render_raycluster",
    "render_rayjob",
    "to_yaml",
    "validate_manifest",
    "write_manifests",
]
