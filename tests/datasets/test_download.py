"""``raymix data movielens`` without ``--source``: GroupLens's ml-100k.zip downloaded, checked,
cached and converted, against a loopback HTTP server serving a zip of the shared raw files."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from raymix import cli
from raymix.datasets.download import MOVIELENS_MD5, STAMP, movielens_source
from raymix.errors import DataError
from tests.conftest import ML100K


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """ml-100k.zip as GroupLens lays it out (``ml-100k/u.data``, ...), from the shared files."""
    root = tmp_path_factory.mktemp("served")
    with zipfile.ZipFile(root / "ml-100k.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("ml-100k/"), "")
        for path in sorted(ML100K.iterdir()):
            zf.write(path, f"ml-100k/{path.name}")
    return root / "ml-100k.zip"


@pytest.fixture()
def server(archive):
    """The archive's directory on a loopback HTTP server; yields the zip's URL."""
    handler = partial(_QuietHandler, directory=str(archive.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}", httpd
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on stderr
        pass


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_download_is_checked_unpacked_and_cached(archive, server, tmp_path):
    url, httpd = server
    cache = tmp_path / "cache"
    got = movielens_source(url, md5_of(archive), cache=cache)
    assert got == cache / "ml-100k"
    for name in ("u.data", "u.item", "u.user"):
        assert (got / name).read_bytes() == (ML100K / name).read_bytes()
    assert (got / STAMP).read_text().strip() == md5_of(archive)
    httpd.shutdown()  # offline now: the cached files are used
    said = []
    assert movielens_source(url, md5_of(archive), cache=cache, progress=said.append) == got
    assert "cached" in said[0]


def test_a_download_with_another_checksum_is_refused(server, tmp_path):
    url, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"checksum mismatch.*expected {MOVIELENS_MD5}"):
        movielens_source(url, None, cache=cache)  # GroupLens's MD5: not our rebuilt zip's
    assert not (cache / "ml-100k").exists()
    assert [p.name for p in cache.iterdir()] == []  # the download left nothing behind


def test_raymix_data_movielens_downloads_when_no_source_is_given(
    archive, server, tmp_path, monkeypatch, capsys
):
    url, _ = server
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    dest = tmp_path / "movielens"
    code = cli.main(
        ["data", "movielens", "--dest", str(dest), "--url", url, "--md5", md5_of(archive)]
    )
    assert code == 0
    assert (tmp_path / "cache" / "ml-100k" / "u.data").is_file()
    assert (dest / "global" / "trainingData" / "part-00000.tfrecord").is_file()
    assert "100,000 ratings of 943 users on 1,682 movies" in capsys.readouterr().out


def test_offline_is_one_line_that_names_source(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    code = cli.main(
        [
            "data",
            "movielens",
            "--dest",
            str(tmp_path / "movielens"),
            "--url",
            f"http://127.0.0.1:{port}/ml-100k.zip",
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    # "12:00:00 [   0.0s] ..." is progress (raymix.console)
    errors = [line for line in lines if not re.match(r"\d\d:\d\d:\d\d \[", line)]
    assert len(errors) == 1 and errors[0].startswith("raymix: error: "), lines
    assert "cannot download MovieLens 100k" in errors[0] and "--source" in errors[0]
    assert not (tmp_path / "movielens").exists()
