"""Whole directories between the local disk and an object store, for libraries that read
and write local directories only (TensorFlow's SavedModel): written locally, then uploaded
file by file; read from a local copy downloaded once per process."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

from raymix.errors import StorageError
from raymix.storage.access import read_bytes, upload, walk
from raymix.storage.filesystems import errors, filesystem
from raymix.storage.uris import is_uri, join, normal, shown

_COPIES: dict[str, tuple[tuple, str]] = {}
_LOCK = threading.Lock()


def upload_tree(local: str | os.PathLike, target: str | os.PathLike) -> list[str]:
    """Copy every file under the local directory ``local`` to the same place under
    ``target`` (a URI); return the objects written. A local ``target`` is refused: callers
    write local directories in place."""
    dst = normal(target).rstrip("/")
    if not is_uri(dst):
        raise ValueError(f"upload_tree needs a URI target, got {dst!r}")
    src = os.path.abspath(local)
    written = []
    for file in walk(src):
        out = join(dst, os.path.relpath(file, src).replace(os.sep, "/"))
        upload(file, out)
        written.append(out)
    return written


def local_tree(path: str | os.PathLike) -> str:
    """A local directory with the files under ``path``: ``path`` itself when it is local,
    else a copy downloaded on first use and kept (for reading only) for the process's life,
    downloaded again when the objects under ``path`` change (names, sizes, times)."""
    text = normal(path).rstrip("/")
    if not is_uri(text):
        return text
    listing = _listing(text)
    with _LOCK:
        known = _COPIES.get(text)
        if known is not None and known[0] == listing:
            return known[1]
        if not listing:
            raise StorageError("no such directory (no objects under it)", uri=shown(text))
        copy = tempfile.mkdtemp(prefix="raymix-tree-")
        for name, _, _ in listing:
            local = os.path.join(copy, *name.split("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as handle:
                handle.write(read_bytes(join(text, name)))
        if known is not None:
            shutil.rmtree(known[1], ignore_errors=True)
        _COPIES[text] = (listing, copy)
        return copy


def _listing(uri: str) -> tuple[tuple[str, int, object], ...]:
    """(relative name, size, modification time) of every object under ``uri``."""
    import pyarrow.fs as pafs

    fs, inner = filesystem(uri)
    with errors(uri, "cannot list"):
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
    return tuple(
        sorted(
            (info.path[len(inner) + 1 :], info.size, info.mtime_ns)
            for info in infos
            if info.type == pafs.FileType.File
        )
    )


@atexit.register
def _remove_copies() -> None:
    for _, copy in _COPIES.values():
        shutil.rmtree(copy, ignore_errors=True)


@contextlib.contextmanager
def writing_tree(target: str | os.PathLike) -> Iterator[str]:
    """A local directory for a library to write into, becoming ``target``: ``target``
    itself when it is local; else a temporary directory uploaded to ``target`` when the
    block succeeds, and removed either way."""
    text = normal(target)
    if not is_uri(text):
        yield text
        return
    work = tempfile.mkdtemp(prefix="raymix-tree-")
    try:
        local = os.path.join(work, "tree")
        yield local
        upload_tree(local, text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
