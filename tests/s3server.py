"""A real S3-compatible server on loopback for the tests: moto's threaded server.

``s3_server`` (session-scoped) starts it on a free port of 127.0.0.1, points this process's
AWS variables at it (dummy credentials, ``AWS_ENDPOINT_URL_S3``: :mod:`raymix.storage` and
the Ray workers started afterwards read them) and stops it at the end of the session. Use it
before ``ray_session`` in a test's arguments, so that the local Ray inherits the variables.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRET = "raymix-test-secret-d41d8cd98f00"  # looked for in every message and file written


@dataclass
class S3Server:
    url: str
    env: dict[str, str]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def bucket(self, name: str) -> str:
        """A new, empty bucket; returns ``s3://name``."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def upload_tree(self, local: Path, uri: str) -> str:
        """Copy every file under ``local`` to the prefix ``uri`` (``s3://bucket/prefix``)."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = self.client()
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                key = "/".join(p for p in (prefix, path.relative_to(local).as_posix()) if p)
                client.upload_file(str(path), bucket, key)
        return uri

    def keys(self, uri: str) -> list[str]:
        """Keys of the objects under ``uri``, relative to it, sorted; without the empty
        ``.../`` markers pyarrow leaves for the parent of what it deletes (its directories)."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        found = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return sorted(k[len(prefix) :] for k in found if not k.endswith("/"))

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restart_ray_with_the_environment() -> None:
    """Ray's workers take the environment of the process that started Ray: a session Ray
    started before this fixture (by an earlier test module) would not know the server.
    Restart it as ``tests/conftest.py``'s ``ray_session`` starts it (which shuts it down at
    the end of the session as before)."""
    import ray

    if not ray.is_initialized():
        return
    ray.shutdown()
    ray.init(
        num_cpus=4,
        object_store_memory=1 << 30,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    from raymix.storage import filesystems

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "raymix-test-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    filesystems.forget()
    _restart_ray_with_the_environment()
    try:
        yield S3Server(url, env)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        filesystems.forget()
