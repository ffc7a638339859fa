"""Names of files and objects: local paths and URIs, joined and shown without secrets."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

#: the completion marker of a published output directory, written last
SUCCESS = "_SUCCESS"
#: schemes served by pyarrow filesystems (``gcs`` is pyarrow's alias of ``gs``)
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//?)(.*)$", re.S)


def scheme(path: str | os.PathLike) -> str:
    """``"s3"``, ``"gs"``, ... of a URI; ``""`` for a local path or ``file://``."""
    match = _SCHEME.match(str(path))
    if not match or len(match.group(1)) == 1:  # "C:/..." is not a scheme
        return ""
    name = match.group(1).lower()
    return "" if name == "file" else name


def is_uri(path: str | os.PathLike) -> bool:
    """True for an object-store or HDFS URI (what cannot be opened with ``open``)."""
    return bool(scheme(path))


def normal(path: str | os.PathLike) -> str:
    """``path`` as raymix names it: a URI with ``//`` (``pathlib`` turns ``s3://b/k`` into
    ``s3:/b/k``), a ``file://`` URI as its local path, a local path as given."""
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if not match or len(match.group(1)) == 1:
        return text
    name, rest = match.group(1).lower(), match.group(3)
    if name == "file":
        return "/" + rest.lstrip("/") if match.group(2) == "//" or rest else text
    return f"{name}://{rest}"


def absolute(path: str | os.PathLike) -> str:
    """A URI as it is; a local path made absolute (a Ray job's driver and the actors on other
    nodes share no working directory)."""
    text = normal(path)
    return text if is_uri(text) else os.path.abspath(text)


def shown(path: str | os.PathLike) -> str:
    """``path`` fit for a message or a log line: a URI without user info or query."""
    text = normal(path)
    if not is_uri(text):
        return text
    parts = urlsplit(text)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def join(base: str | os.PathLike, *names: str) -> str:
    """``base/name/...`` for a URI or a local path."""
    text = normal(base)
    for name in names:
        text = text.rstrip("/") + "/" + name.strip("/") if text else name
    return text


def parent(path: str | os.PathLike) -> str:
    text = normal(path).rstrip("/")
    if not is_uri(text):
        return os.path.dirname(text)
    head, _, _ = text.rpartition("/")
    return head if not head.endswith(":/") else text


def name_of(path: str | os.PathLike) -> str:
    return normal(path).rstrip("/").rpartition("/")[2]


def as_path(path: str | os.PathLike) -> Path:
    """What writers return: a local :class:`~pathlib.Path`; a URI stays a ``str`` (``Path``
    would fold ``s3://`` into ``s3:/``). Typed as a path: callers only print it or ``str()``
    it, and :func:`normal` undoes the fold if a URI went through ``Path`` anyway."""
    text = normal(path)
    return cast(Path, text) if is_uri(text) else Path(text)


class Location(str):
    """A URI that joins like a :class:`~pathlib.Path` (``out / "models"``) without folding
    ``s3://`` into ``s3:/``: what an object-store output directory is handed around as.
    ``final`` is where a staged output will be published (itself when written in place)."""

    final: str

    def __new__(cls, uri: str, final: str | None = None):
        self = super().__new__(cls, normal(uri).rstrip("/"))
        self.final = normal(final).rstrip("/") if final else str(self)
        return self

    def __truediv__(self, name: str) -> Location:
        return Location(join(self, str(name)))

    @property
    def name(self) -> str:
        return name_of(self)

    @property
    def parent(self) -> Location:
        return Location(parent(self))
