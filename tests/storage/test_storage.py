"""raymix.storage against local files and a real S3 server on loopback (no Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from raymix import storage
from raymix.errors import StorageError
from tests.s3server import SECRET, free_port, s3_server  # noqa: F401 - a fixture


@pytest.fixture
def bucket(s3_server, request):  # noqa: F811
    name = "rm-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    return s3_server.bucket(name)


# ----------------------------------------------------------------------------- names


def test_names_keep_uris_whole_and_local_paths_as_they_are():
    assert storage.normal("s3:/b/k/x") == "s3://b/k/x"  # what pathlib makes of s3://b/k/x
    assert storage.normal("S3://b/k") == "s3://b/k"
    assert storage.normal("file:///tmp/x") == "/tmp/x"
    assert storage.normal("relative/x") == "relative/x"
    assert storage.is_uri("gs://b/x") and storage.is_uri("hdfs://nn:8020/x")
    assert not storage.is_uri("/tmp/x") and not storage.is_uri("file:///tmp/x")
    assert storage.join("s3://b/out/", "m", "part-0.avro") == "s3://b/out/m/part-0.avro"
    assert storage.parent("s3://b/out/m") == "s3://b/out"
    assert storage.name_of("s3://b/out/m/") == "m"
    assert storage.shown("s3://key:secret@b/x?token=1") == "s3://b/x"
    out = storage.Location("s3://b/out")
    assert out / "models" / "x.avro" == "s3://b/out/models/x.avro"
    assert out.name == "out" and out.parent == "s3://b" and out.final == "s3://b/out"


def test_unknown_scheme_and_credentials_in_a_uri_are_refused_in_one_line():
    with pytest.raises(StorageError, match=r"^ftp://host/x: unknown scheme 'ftp://'"):
        storage.filesystem("ftp://host/x")
    with pytest.raises(StorageError, match="credentials in a URI are refused") as caught:
        storage.read_bytes("s3://AKIA:topsecret@bucket/x")
    assert "topsecret" not in str(caught.value) and "AKIA" not in str(caught.value)


def test_glob_patterns_match_within_and_across_directories():
    regex = storage.access._glob_regex  # the translation, without a server
    assert regex("*.parquet").fullmatch("a.parquet")
    assert not regex("*.parquet").fullmatch("d/a.parquet")
    assert regex("**/*.parquet").fullmatch("d/e/a.parquet")
    assert regex("**/*.parquet").fullmatch("a.parquet")
    assert regex("part-?.tfrecord").fullmatch("part-1.tfrecord")


def test_local_writes_are_atomic_with_the_usual_modes(tmp_path):
    path = tmp_path / "a" / "b.json"
    storage.write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), storage.staged(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not (tmp_path / "c.bin").exists() and sorted(os.listdir(tmp_path)) == ["a"]


# ----------------------------------------------------------------------------- S3


def test_write_read_list_glob_copy_delete_on_s3(s3_server, bucket):  # noqa: F811
    storage.write_text(f"{bucket}/d/a.txt", "alpha\n")
    storage.write_bytes(f"{bucket}/d/e/b.parquet", b"\x00\x01")
    with storage.staged(f"{bucket}/d/e/c.parquet") as tmp:
        tmp.write_bytes(b"staged")
    assert storage.read_text(f"{bucket}/d/a.txt") == "alpha\n"
    assert s3_server.get(f"{bucket}/d/e/c.parquet") == b"staged"
    assert storage.is_file(f"{bucket}/d/a.txt") and storage.is_dir(f"{bucket}/d")
    assert not storage.exists(f"{bucket}/nothing") and storage.size(f"{bucket}/d/a.txt") == 6
    assert storage.walk(f"{bucket}/d") == [
        f"{bucket}/d/a.txt",
        f"{bucket}/d/e/b.parquet",
        f"{bucket}/d/e/c.parquet",
    ]
    assert storage.list_dir(f"{bucket}/d") == ["a.txt", "e"]
    assert storage.glob(f"{bucket}/d/**/*.parquet") == [
        f"{bucket}/d/e/b.parquet",
        f"{bucket}/d/e/c.parquet",
    ]
    assert storage.glob(f"{bucket}/d/*.txt") == [f"{bucket}/d/a.txt"]
    with storage.open_input(f"{bucket}/d/e/c.parquet") as f:
        assert f.read(3) == b"sta" and f.read() == b"ged"
    storage.copy_tree(f"{bucket}/d", f"{bucket}/copy")
    assert s3_server.keys(f"{bucket}/copy") == ["a.txt", "e/b.parquet", "e/c.parquet"]
    storage.delete_tree(f"{bucket}/d")
    assert s3_server.keys(f"{bucket}/d") == []
    with storage.local_copy(f"{bucket}/copy/a.txt") as local:
        assert Path(local).read_text() == "alpha\n"
    assert not os.path.exists(local)


def test_a_failed_staged_write_leaves_no_object(s3_server, bucket):  # noqa: F811
    with pytest.raises(RuntimeError), storage.staged(f"{bucket}/x.avro") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert s3_server.keys(bucket) == []


def test_missing_bucket_and_key_fail_in_one_line_naming_the_uri(s3_server, bucket):  # noqa: F811
    with pytest.raises(StorageError) as caught:
        storage.read_bytes("s3://no-such-bucket-here/x")
    assert str(caught.value) == "s3://no-such-bucket-here/x: cannot read: no such bucket"
    with pytest.raises(StorageError, match="no such bucket"):
        storage.check_reachable("s3://no-such-bucket-here/out")
    with pytest.raises(StorageError, match=rf"^{bucket}/missing.json: cannot read: no such file"):
        storage.read_text(f"{bucket}/missing.json")


def test_a_server_that_is_gone_fails_in_one_line(monkeypatch, s3_server):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    storage.filesystems.forget()
    try:
        with pytest.raises(StorageError) as caught:
            storage.write_text("s3://some-bucket/x.json", "{}")
        assert str(caught.value).startswith("s3://some-bucket/x.json: cannot write: ")
        assert "cannot reach the object store" in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        monkeypatch.undo()
        storage.filesystems.forget()


def test_rejected_missing_and_unauthorised_credentials(s3_server, bucket):  # noqa: F811
    """With moto's IAM checks on: an unknown key, no key, and a user without a policy."""
    import boto3

    storage.write_text(f"{bucket}/x.json", "{}")
    iam = boto3.client("iam", endpoint_url=s3_server.url, region_name="us-east-1")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    requests.post(f"{s3_server.url}/moto-api/reset-auth", data=b"0", timeout=10)
    env = dict(os.environ)
    try:
        cases = [  # a HEAD's 403 has no body: an unknown key reads as access denied too
            ("access denied (check the credentials", {}),  # the fixture's key: unknown to IAM
            (
                "access denied (check the credentials",
                {
                    "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                },
            ),
        ]
        for reason, update in cases:
            os.environ.update(update)
            storage.filesystems.forget()
            with pytest.raises(StorageError) as caught:
                storage.read_text(f"{bucket}/x.json")
            message = str(caught.value)
            assert message.startswith(f"{bucket}/x.json: cannot read: {reason}"), message
            assert SECRET not in message and key["SecretAccessKey"] not in message
        # no credentials anywhere: a fresh process with an empty home and no AWS keys
        bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        bare.update(HOME=str(os.path.dirname(__file__)), AWS_EC2_METADATA_DISABLED="true")
        bare["AWS_ENDPOINT_URL_S3"] = s3_server.url
        bare["AWS_CONFIG_FILE"] = bare["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from raymix import storage; storage.read_text('{bucket}/x.json')",
            ],
            env=bare,
            capture_output=True,
            text=True,
            timeout=120,
        )
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode != 0 and "StorageError" in last and f"{bucket}/x.json" in last, last
        assert "no credentials found" in last, last
    finally:
        requests.post(f"{s3_server.url}/moto-api/reset-auth", data=b"inf", timeout=10)
        os.environ.clear()
        os.environ.update(env)
        storage.filesystems.forget()
