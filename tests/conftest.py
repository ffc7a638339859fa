"""Shared fixtures. Ray is started only by the ``ray_session`` fixture, never at import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "data" / "gdmix-fixtures"
ML100K = SHARED / "data" / "ml-100k"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole test session: 4 logical CPUs on 2 cores, 1 GiB object store."""
    import ray

    from raymix.engine.cluster import quiet_environment

    quiet_environment()
    if not ray.is_initialized():
        ray.init(
            num_cpus=4,
            object_store_memory=1 << 30,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def movielens(tmp_path_factory, shared) -> Path:
    """ml-100k converted once per session (TFRecord, seed 0)."""
    from raymix.datasets.movielens import convert_movielens

    dest = tmp_path_factory.mktemp("movielens")
    convert_movielens(ML100K, dest, seed=0, fmt="tfrecord")
    return dest
