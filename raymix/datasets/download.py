"""GroupLens's MovieLens 100k archive, downloaded once, checked and cached.

MovieLens may not be redistributed, so raymix ships none of it: ``raymix data movielens``
without ``--source`` fetches the official ``ml-100k.zip`` from GroupLens, checks its MD5
against the one GroupLens publishes beside it (``ml-100k.zip.md5``: ``MD5 (ml-100k.zip) =
0e33842e24a9c977be4e0107933c0723``), and unpacks it into the user's cache directory
(``$RAYMIX_CACHE_DIR``, else ``$XDG_CACHE_HOME/raymix``, else ``~/.cache/raymix``). Later
calls use the cached files. The URL and the checksum can be changed (a mirror, a test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from raymix.errors import DataError
from raymix.files import write_text

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: GroupLens's published MD5 of ml-100k.zip (https://files.grouplens.org/datasets/movielens/
#: ml-100k.zip.md5)
MOVIELENS_MD5 = "0e33842e24a9c977be4e0107933c0723"
#: the raw files the movieLens converter reads
MOVIELENS_FILES = ("u.data", "u.item", "u.user")
#: written into the unpacked directory: the MD5 of the archive it came from
STAMP = ".raymix-md5"
TIMEOUT_SECONDS = 60


def cache_dir() -> Path:
    """raymix's cache directory (nothing is created here)."""
    if os.environ.get("RAYMIX_CACHE_DIR"):
        return Path(os.environ["RAYMIX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "raymix"


def movielens_source(
    url: str | None = None,
    md5: str | None = None,
    cache: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The directory of the raw MovieLens 100k files (``u.data``, ...), downloading and
    unpacking ``url`` (default :data:`MOVIELENS_URL`) into ``cache`` the first time, after
    checking its MD5 against ``md5`` (default :data:`MOVIELENS_MD5`)."""
    say = progress or (lambda message: None)
    url = url or MOVIELENS_URL
    md5 = (md5 or MOVIELENS_MD5).lower()
    target = Path(cache) if cache is not None else cache_dir()
    unpacked = target / "ml-100k"
    stamp = unpacked / STAMP
    if stamp.is_file() and stamp.read_text().strip() == md5 and _complete(unpacked):
        say(f"using the MovieLens 100k files cached in {unpacked}")
        return unpacked
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ml-100k.", dir=target) as work:
        archive = Path(work) / "ml-100k.zip"
        say(f"downloading {url}")
        got = _download(url, archive)
        if got != md5:
            raise DataError(
                f"checksum mismatch: the download's MD5 is {got}, expected {md5}; "
                "pass --source DIR with the MovieLens 100k files instead",
                path=url,
            )
        staging = Path(work) / "unpacked"
        _unpack(archive, staging, url)
        write_text(staging / STAMP, md5 + "\n")
        if unpacked.exists():
            shutil.rmtree(unpacked)  # raymix's own cache entry, not the user's data
        os.replace(staging, unpacked)
    say(f"MovieLens 100k unpacked in {unpacked}")
    return unpacked


def _download(url: str, path: Path) -> str:
    """Save ``url`` at ``path``; return the MD5 of its bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with (
            urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response,
            open(path, "wb") as f,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"cannot download MovieLens 100k ({reason}); offline, download ml-100k.zip "
            "from GroupLens elsewhere, unzip it and pass --source DIR (the directory with "
            "u.data, u.item, u.user)",
            path=url,
        ) from None
    return digest.hexdigest()


def _unpack(archive: Path, dest: Path, url: str) -> None:
    """The archive's ``ml-100k/*`` files into ``dest`` (flat; no member leaves it)."""
    dest.mkdir()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not name or name.startswith("."):
                    continue
                with zf.open(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive: {exc}", path=url) from None
    if not _complete(dest):
        missing = [f for f in MOVIELENS_FILES if not (dest / f).is_file()]
        raise DataError(f"the archive has no {', '.join(missing)}", path=url)


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in MOVIELENS_FILES)
