"""Files as raymix writes them: whole or not at all, with the usual modes.

Every file is written to a temporary sibling (``.NAME.XXXX.tmp``) and ``os.replace``d into
place, so a crash never leaves a half-written file under its final name. ``mkstemp`` makes
the temporary file ``0600``; before the rename it gets the mode any new file gets,
``0666 & ~umask`` (``0644`` under the usual umask), so that another user or pod sharing the
volume can read the outputs. Directories are made with ``0777 & ~umask``. No ``fsync``: the
rename protects against a crashed process, not against a lost machine.

This is the one writer of the package; nothing else opens a file for writing in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from raymix.errors import DataError, StorageError


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success give it the usual file mode and
    rename it to ``path``; on failure remove it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _unwritable(exc, path) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            raise _unwritable(exc, path) from None
        raise


#: what a full, read-only or forbidden disk answers a write with
DISK_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
)


def _unwritable(exc: OSError, path: Path) -> Exception:
    """A disk's refusal as one :class:`StorageError` line naming the file (an ``ENOSPC``
    from ``write`` names none)."""
    if exc.errno not in DISK_ERRORS:
        return exc
    return StorageError(f"cannot write: {exc.strerror or exc}", str(path))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text with ``\\n`` line endings, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def existing_file(path: str | os.PathLike) -> str:
    """``path`` as a string; :class:`DataError` if it is not a file."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataError("data file not found", path)
    return path
