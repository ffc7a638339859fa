"""What the manifests need from a cluster: :class:`ClusterShape`, a spec checked on construction."""

from __future__ import annotations

import posixpath
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from raymix.k8s.names import DNS1123_LABEL, DNS1123_SUBDOMAIN
from raymix.recipe.checked import CheckedSpec, checked

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonEmpty = Annotated[str, checked(lambda v: bool(v.strip()), "a non-empty string")]
DnsName = Annotated[
    str,
    checked(
        lambda v: bool(DNS1123_SUBDOMAIN.match(v)),
        "None or a DNS-1123 name (lowercase letters, digits, '-', '.')",
    ),
]
AbsolutePath = Annotated[
    str,
    checked(lambda v: posixpath.isabs(v) and v != "/", "an absolute POSIX path other than '/'"),
]


class ClusterShape(CheckedSpec):
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

    workers: Annotated[int, Field(ge=0)] = 2
    worker_cpus: Positive = 2
    worker_memory_gib: Positive = 8
    head_cpus: Positive = 2
    head_memory_gib: Positive = 8
    image: NonEmpty = "raymix:0.1.0"
    namespace: Annotated[
        str,
        checked(
            lambda v: bool(DNS1123_LABEL.match(v)),
            "a DNS-1123 label (lowercase letters, digits, '-')",
        ),
    ] = "default"
    data_pvc: DnsName | None = "raymix-data"
    mount_path: AbsolutePath = "/data"
    ray_version: NonEmpty = "2.60.0"
    service_account: DnsName | None = None
    logical_cpus_factor: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 2.0
    object_store_fraction: Annotated[float, Field(gt=0, le=0.8)] = 0.3
    max_workers: Annotated[int, Field(ge=0)] | None = None
    app_dir: AbsolutePath = "/opt/raymix"

    @field_validator("max_workers")
    @classmethod
    def _at_least_workers(cls, value: int | None, info: ValidationInfo) -> int | None:
        workers = info.data.get("workers")
        if value is not None and workers is not None and value < workers:
            raise ValueError(f"must be None or an integer >= workers ({workers})")
        return value

    @field_validator("mount_path")
    @classmethod
    def _not_the_object_store(cls, value: str) -> str:
        if posixpath.normpath(value) == "/dev/shm":
            raise ValueError("must be a path other than /dev/shm (used by Ray's object store)")
        return value
