"""Queries, reads and whole-or-nothing writes of local files and objects (see
:mod:`raymix.storage`)."""

from __future__ import annotations

import contextlib
import fnmatch
import glob as _glob
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from raymix.errors import DataError, StorageError
from raymix.files import atomic_path
from raymix.files import existing_file as _existing_local_file
from raymix.files import write_text as _write_local_text
from raymix.storage.filesystems import errors, filesystem
from raymix.storage.uris import is_uri, join, name_of, normal, shown

_WILDCARD = re.compile(r"[*?\[]")


def _info(path: str):
    fs, inner = filesystem(path)
    with errors(path, "cannot read"):
        return fs.get_file_info(inner)


def exists(path: str | os.PathLike) -> bool:
    text = normal(path)
    if not is_uri(text):
        return os.path.exists(text)
    import pyarrow.fs as pafs

    return _info(text).type != pafs.FileType.NotFound


def is_file(path: str | os.PathLike) -> bool:
    text = normal(path)
    if not is_uri(text):
        return os.path.isfile(text)
    import pyarrow.fs as pafs

    return _info(text).type == pafs.FileType.File


def is_dir(path: str | os.PathLike) -> bool:
    """A local directory; in an object store, a prefix holding at least one object."""
    text = normal(path)
    if not is_uri(text):
        return os.path.isdir(text)
    import pyarrow.fs as pafs

    return _info(text).type == pafs.FileType.Directory


def size(path: str | os.PathLike) -> int:
    text = normal(path)
    if not is_uri(text):
        return os.path.getsize(text)
    info = _info(text)
    if info.size is None:
        raise StorageError("cannot read: no such file", shown(text))
    return int(info.size)


def check_reachable(path: str | os.PathLike) -> None:
    """Raise a :class:`StorageError` now if the bucket of ``path`` is missing or refuses us."""
    text = normal(path)
    if not is_uri(text):
        return
    import pyarrow.fs as pafs

    fs, inner = filesystem(text)
    bucket = inner.split("/", 1)[0]
    with errors(text, "cannot use the bucket"):
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise StorageError("no such bucket", shown(text))
        fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))


def walk(directory: str | os.PathLike) -> list[str]:
    """Every file under ``directory`` (recursively), sorted; ``[]`` if there is none."""
    text = normal(directory)
    if not is_uri(text):
        found = [os.path.join(root, name) for root, _, names in os.walk(text) for name in names]
        return sorted(found)
    import pyarrow.fs as pafs

    fs, inner = filesystem(text)
    with errors(text, "cannot list"):
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
    prefix = text.rstrip("/")
    return sorted(
        prefix + info.path[len(inner) :] for info in infos if info.type == pafs.FileType.File
    )


def list_dir(directory: str | os.PathLike) -> list[str]:
    """Names directly under ``directory`` (files and sub-directories), sorted."""
    text = normal(directory)
    if not is_uri(text):
        return sorted(os.listdir(text)) if os.path.isdir(text) else []
    import pyarrow.fs as pafs

    fs, inner = filesystem(text)
    with errors(text, "cannot list"):
        infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(info.base_name for info in infos)


def glob(pattern: str | os.PathLike) -> list[str]:
    """Files matching ``pattern`` (``*``, ``?``, ``[...]`` within a name, ``**`` across
    directories), sorted; locally :func:`glob.glob` with ``recursive=True``."""
    text = normal(pattern)
    if not is_uri(text):
        return sorted(_glob.glob(text, recursive=True))
    head, rest = text, ""
    parts = text.split("/")
    for k, part in enumerate(parts):
        if _WILDCARD.search(part):
            head, rest = "/".join(parts[:k]), "/".join(parts[k:])
            break
    if not rest:
        return [text] if is_file(text) else []
    regex = _glob_regex(rest)
    return [f for f in walk(head) if regex.fullmatch(f[len(head) + 1 :])]


def _glob_regex(pattern: str) -> re.Pattern:
    out = []
    for k, part in enumerate(pattern.split("/")):
        if part == "**":
            out.append("(?:[^/]+/)*")
            continue
        piece = fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z")
        out.append(piece.replace(".*", "[^/]*") + ("/" if k < len(pattern.split("/")) - 1 else ""))
    return re.compile("".join(out), re.S)


def open_input(path: str | os.PathLike):
    """A binary file object to read ``path`` (random access; close it, or use ``with``)."""
    text = normal(path)
    if not is_uri(text):
        return open(text, "rb")  # noqa: SIM115 - the caller closes it
    fs, inner = filesystem(text)
    with errors(text, "cannot read"):
        return fs.open_input_file(inner)


def read_bytes(path: str | os.PathLike) -> bytes:
    text = normal(path)
    if not is_uri(text):
        with open(text, "rb") as f:
            return f.read()
    fs, inner = filesystem(text)
    with errors(text, "cannot read"), fs.open_input_stream(inner) as f:
        return f.read()


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local file with the bytes of ``path`` (itself when it is local), for readers that
    only take a file name (``tf.data``); a copy is removed afterwards."""
    text = normal(path)
    if not is_uri(text):
        yield text
        return
    suffix = "".join(Path(name_of(text)).suffixes)
    fd, tmp = tempfile.mkstemp(prefix="raymix-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(read_bytes(text))
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def make_dirs(path: str | os.PathLike) -> None:
    """A local directory with its parents (``0777 & ~umask``); nothing for an object store,
    whose directories are the prefixes of its objects."""
    text = normal(path)
    if not is_uri(text):
        os.makedirs(text, exist_ok=True)


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a local temporary file for the caller to write; on success it becomes ``path``
    whole (locally: :func:`raymix.files.atomic_path`'s rename and modes; in an object store:
    one upload, which completes or leaves nothing), on failure it is removed."""
    text = normal(path)
    if not is_uri(text):
        with atomic_path(text) as local:
            yield local
        return
    fd, tmp = tempfile.mkstemp(prefix="raymix-", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        upload(tmp, text)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def upload(local: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy the local file ``local`` to the URI ``path`` (one object)."""
    fs, inner = filesystem(path)
    with (
        errors(path, "cannot write"),
        open(local, "rb") as source,
        fs.open_output_stream(inner) as sink,
    ):
        while chunk := source.read(8 << 20):
            sink.write(chunk)


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` whole or not at all."""
    text = normal(path)
    if not is_uri(text):
        with atomic_path(text) as tmp, open(tmp, "wb") as f:
            f.write(data)
        return text
    fs, inner = filesystem(text)
    with errors(text, "cannot write"), fs.open_output_stream(inner) as sink:
        sink.write(data)
    return text


def write_text(path: str | os.PathLike, text: str) -> str:
    """UTF-8 text with ``\\n`` endings, whole or not at all."""
    where = normal(path)
    if not is_uri(where):
        _write_local_text(where, text)
        return where
    return write_bytes(where, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload) -> str:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def delete_file(path: str | os.PathLike) -> None:
    """Remove one file if it is there."""
    text = normal(path)
    if not is_uri(text):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(text)
        return
    fs, inner = filesystem(text)
    with errors(text, "cannot delete"), contextlib.suppress(FileNotFoundError):
        fs.delete_file(inner)


def delete_tree(path: str | os.PathLike) -> None:
    """Remove a directory (every object under a prefix) if it is there."""
    text = normal(path)
    if not is_uri(text):
        import shutil

        shutil.rmtree(text, ignore_errors=True)
        return
    fs, inner = filesystem(text)
    with errors(text, "cannot delete"), contextlib.suppress(FileNotFoundError):
        fs.delete_dir(inner)


def copy_tree(source: str | os.PathLike, target: str | os.PathLike) -> list[str]:
    """Copy every file under ``source`` to the same place under ``target`` (server-side in
    an object store); return the targets written."""
    src, dst = normal(source).rstrip("/"), normal(target).rstrip("/")
    written = []
    fs, _ = filesystem(dst)
    for file in walk(src):
        relative = file[len(src) + 1 :]
        out = join(dst, relative)
        _, a = filesystem(file)
        _, b = filesystem(out)
        with errors(out, "cannot write"):
            fs.copy_file(a, b)
        written.append(out)
    return written


def text_stream(path: str | os.PathLike) -> io.StringIO:
    """The UTF-8 text of ``path`` as a file object (for ``csv`` readers)."""
    return io.StringIO(read_text(path))


def existing_file(path: str | os.PathLike) -> str:
    """``path`` as a string (a URI normalised); :class:`~raymix.errors.DataError` if it is
    not a file."""
    text = normal(path)
    if not is_uri(text):
        return _existing_local_file(text)
    if not is_file(text):
        raise DataError("data file not found", shown(text))
    return text
