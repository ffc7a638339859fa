"""Atomic file writes and the output directory contract.

* Every file is written to a temporary sibling and ``os.replace``d into place, so a crash
  never leaves a half-written file under its final name.
* A run refuses a non-empty output directory unless asked to overwrite, and even then only
  clears a directory that raymix itself wrote (it holds ``run.json``): a user's directory is
  never deleted.
* A failing run never corrupts a previous one: :func:`output_transaction` moves the previous
  run back into place and keeps the failed run's partial outputs beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from raymix.errors import RaymixError, RecipeError
from raymix.files import atomic_path, write_json, write_text  # noqa: F401 - re-exported

RUN_FILE = "run.json"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # s3://b/x, gs://..., also Path's s3:/b/x


def local_output(path: str | Path, field: str = "output") -> Path:
    """``path`` as an absolute local directory; object-store URIs are refused (not yet supported).

    Absolute, because on a cluster the driver (a Ray job runs in its own working directory)
    and the actors writing the random-effect models (in theirs) share no current directory.
    """
    text = str(path)
    if _URI.match(text):
        raise RecipeError(
            f"'{text}' is a URI, but only local paths are supported for outputs yet: on a "
            "cluster use a shared filesystem mounted at the same path on every node (NFS, a "
            "Kubernetes volume), not an object store (s3://, gs://, ...)",
            field=field,
        )
    return Path(os.path.abspath(text))


def absolute_paths(recipe):
    """The recipe with its output and warm starts as absolute paths (see :func:`local_output`)."""
    coordinates = tuple(
        c.model_copy(update={"warm_start": os.path.abspath(c.warm_start)})
        if getattr(c, "warm_start", None) and not _URI.match(c.warm_start)
        else c
        for c in recipe.coordinates
    )
    output = str(local_output(recipe.output))
    return recipe.model_copy(update={"output": output, "coordinates": coordinates})


def prepare_output(
    path: str | Path, overwrite: bool, resume: bool = False
) -> tuple[Path, Path | None]:
    """Check the output directory before anything starts; return it and the previous run's copy.

    With ``overwrite`` a previous raymix run is moved aside to a hidden sibling, not deleted:
    the caller deletes it with :func:`discard_previous` once the new run has succeeded, so a
    failing run never loses the earlier results.
    """
    path = local_output(path)
    if path.exists() and not path.is_dir():
        raise RecipeError(f"output '{path}' exists and is not a directory", field="output")
    if resume:
        if not (path / RUN_FILE).is_file():
            raise RecipeError(f"cannot resume: '{path}' holds no {RUN_FILE}", field="output")
        return path, None
    previous = None
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RecipeError(
                f"output directory '{path}' is not empty (use --overwrite to replace a previous run)",
                field="output",
            )
        if not (path / RUN_FILE).is_file():
            raise RecipeError(
                f"refusing to overwrite '{path}': it is not a raymix output (no {RUN_FILE})",
                field="output",
            )
        previous = _aside(path, "previous")
        os.replace(path, previous)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecipeError(
            f"cannot create output directory '{path}': {exc}", field="output"
        ) from None
    if not os.access(path, os.W_OK):
        raise RecipeError(f"output directory '{path}' is not writable", field="output")
    return path, previous


def discard_previous(previous: Path | None) -> None:
    """Delete the previous run moved aside by :func:`prepare_output` (after success)."""
    if previous is not None and previous.is_dir():
        shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def output_transaction(path: str | Path, overwrite: bool, resume: bool = False):
    """Prepare the output directory (:func:`prepare_output`), yield it, and keep it consistent.

    On success the previous run (moved aside with ``overwrite``) is deleted. If the body
    raises, the previous run is moved back to ``path`` unchanged, this run's partial outputs
    go to a hidden sibling ``.NAME.failed-PID``, and the error's message says where both are.
    Without a previous run (a fresh directory, or ``resume``) a failed run's outputs stay in
    place, where ``--resume`` finds its checkpoint.
    """
    out, previous = prepare_output(path, overwrite, resume=resume)
    try:
        yield out
    except BaseException as exc:
        if previous is not None:
            _tell(exc, _restore(out, previous))
        raise
    discard_previous(previous)


def _restore(out: Path, previous: Path) -> str:
    failed = _aside(out, "failed")
    try:
        os.replace(out, failed)
        os.replace(previous, out)
    except OSError as exc:
        return f"the previous run is kept in '{previous}': moving it back failed: {exc}"
    return f"the previous run in '{out}' is unchanged; this run's partial outputs are in '{failed}'"


def _tell(exc: BaseException, note: str) -> None:
    """Append ``note`` to the one-line message of a raymix error (a note on any other)."""
    if isinstance(exc, RaymixError):
        exc.message = f"{exc.message} ({note})"
        exc.args = (exc.message,)
    else:
        exc.add_note(note)


def _aside(path: Path, tag: str) -> Path:
    """A free hidden sibling name for ``path``: ``.NAME.TAG-PID`` (then ``-2``, ``-3``, ...)."""
    base = path.with_name(f".{path.name}.{tag}-{os.getpid()}")
    candidate, k = base, 1
    while os.path.lexists(candidate):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate
