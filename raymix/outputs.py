"""Atomic file writes and the output directory contract, for local paths and object stores.

* Every file is written whole or not at all: locally to a temporary sibling ``os.replace``d
  into place, in an object store as one upload (see :mod:`raymix.storage`).
* A finished output holds ``_SUCCESS``, written last (:data:`SUCCESS`, as Hadoop and Spark
  do); readers (``raymix score``, a warm start) refuse a raymix output without it.
* A run refuses a non-empty output directory unless asked to overwrite, and even then only
  replaces a directory that raymix itself wrote (it holds ``run.json``): a user's directory is
  never deleted.
* A failing run never corrupts a previous one. Locally :func:`output_transaction` moves the
  previous run back into place and keeps the failed run's partial outputs beside it. An
  object store has no rename: a run that replaces a previous one writes under a hidden
  sibling prefix (``.NAME.staging-PID``) and is published (copied over, ``_SUCCESS`` last)
  only once it has succeeded, so the previous run stays complete and readable until then,
  even if the store goes away mid-run. A first run writes in place (where ``--resume`` finds
  its checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import cast

from raymix import storage
from raymix.errors import RaymixError, RecipeError, StorageError
from raymix.files import atomic_path, write_json, write_text  # noqa: F401 - re-exported
from raymix.lock import leftovers, output_lock
from raymix.storage import SUCCESS, Location

RUN_FILE = "run.json"
#: the marker of a ``raymix score`` output (what was scored), as run.json is a fit's
SCORE_FILE = "score.json"


def _kind(marker: str) -> str:
    return "raymix fit output" if marker == RUN_FILE else "raymix score output"


def check_apart(out, fit_output) -> None:
    """Refuse an output directory equal to, inside or around a fit's output: writing there
    (or replacing it with ``--overwrite``) would delete the models."""
    a, b = (str(storage.shown(p)).rstrip("/") + "/" for p in (out, fit_output))
    if not isinstance(output_location(out), Location):
        a, b = (str(Path(p).resolve()) + "/" for p in (out, fit_output))
    if a.startswith(b) or b.startswith(a):
        raise RecipeError(
            f"--out '{storage.shown(out)}' overlaps the fit output '{storage.shown(fit_output)}' "
            "(writing scores there would replace its models): choose another directory",
            field="out",
        )


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # s3://b/x, gs://..., also Path's s3:/b/x


def output_location(path: str | Path, field: str = "output") -> Path | Location:
    """``path`` as an absolute local directory, or an object-store URI (``s3://``, ``gs://``,
    ``hdfs://``) as a :class:`~raymix.storage.Location`; an unknown scheme is refused.

    Absolute, because on a cluster the driver (a Ray job runs in its own working directory)
    and the actors writing the random-effect models (in theirs) share no current directory.
    """
    text = storage.normal(path)
    if storage.is_uri(text):
        if storage.scheme(text) not in storage.REMOTE_SCHEMES:
            raise RecipeError(
                f"'{storage.shown(text)}' has an unknown scheme (outputs go to a local path, "
                "s3://, gs:// or hdfs://)",
                field=field,
            )
        return Location(text)
    return Path(os.path.abspath(text))


def local_output(path: str | Path, field: str = "output") -> Path:
    """A local output directory (see :func:`output_location`); :class:`RecipeError` for a URI."""
    where = output_location(path, field)
    if isinstance(where, Location):
        raise RecipeError(f"'{where}' is a URI; a local path is needed here", field=field)
    return where


def absolute_paths(recipe):
    """The recipe with its output, warm starts and priors absolute (URIs as they are, normalised)."""
    coordinates = tuple(
        c.model_copy(update={"warm_start": storage.absolute(c.warm_start)})
        if getattr(c, "warm_start", None)
        else c
        for c in recipe.coordinates
    )
    coordinates = tuple(
        c.model_copy(
            update={
                "prior": c.prior.model_copy(update={"models": storage.absolute(c.prior.models)})
            }
        )  # fmt: skip
        if getattr(c, "prior", None) is not None
        else c
        for c in coordinates
    )
    output = str(output_location(recipe.output))
    return recipe.model_copy(update={"output": output, "coordinates": coordinates})


def load_run(directory: str | Path):
    """The resolved recipe (``run.json``) of a raymix output, local or in an object store."""
    import json

    from raymix.recipe.load import load_recipe, validate_recipe

    where = output_location(directory)
    path = where / RUN_FILE
    if not storage.is_file(path):  # a user's directory, a file, a typo: not a run
        raise RecipeError(
            f"'{storage.shown(where)}' is not a raymix output: it holds no {RUN_FILE}"
        )
    if not isinstance(where, Location):
        return load_recipe(path)
    try:
        raw = json.loads(storage.read_text(path))
    except ValueError as exc:
        raise RecipeError(f"{path}: invalid JSON: {exc}") from None
    return validate_recipe(raw, source=str(path))


def check_writable(path: str | Path) -> None:
    """The output could be written: an object store answers (bucket, credentials), or a
    local path is a directory or can be made one where its nearest existing parent is
    writable (``--dry-run``'s check; nothing is created)."""
    where = output_location(path)
    if isinstance(where, Location):
        storage.check_reachable(where)
        return
    if where.exists() and not where.is_dir():
        raise RecipeError(f"output '{where}' exists and is not a directory", field="output")
    existing = where
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RecipeError(
            f"output '{where}' cannot be written: '{existing}' is not a writable directory",
            field="output",
        )


def check_complete(directory: str | Path, what: str = "output") -> None:
    """Refuse a raymix output that has no ``_SUCCESS`` (its run did not finish)."""
    if not storage.is_file(storage.join(directory, SUCCESS)):
        raise RecipeError(
            f"'{storage.shown(directory)}' is an incomplete raymix {what}: it has no {SUCCESS} "
            "(the run that wrote it failed or is still running)"
        )


def check_warm_start(path: str, field: str) -> None:
    """A warm start inside a raymix output (``<output>/<coordinate>/models``) needs that
    output's ``_SUCCESS``; model directories of other origins are taken as they are."""
    root = storage.parent(storage.parent(path))
    inside = bool(root) and storage.is_file(storage.join(root, RUN_FILE))
    if inside and not storage.is_file(storage.join(root, SUCCESS)):
        raise RecipeError(
            f"warm start '{storage.shown(path)}' is in an incomplete raymix output: "
            f"'{storage.shown(root)}' has no {SUCCESS}",
            field=field,
        )


def prepare_output(
    path: str | Path,
    overwrite: bool,
    resume: bool = False,
    marker: str = RUN_FILE,
    run: str | None = None,
) -> tuple[Path, Path | None]:
    """Check the output directory before anything starts; return it and the previous run's copy.

    With ``overwrite`` a previous raymix run is moved aside to a hidden sibling, not deleted:
    the caller deletes it with :func:`discard_previous` once the new run has succeeded, so a
    failing run never loses the earlier results. Without it, the partial outputs of a failed
    run of the very same recipe (``run``, this run's ``run.json``) are replaced as well: a
    failed run never blocks its own plain rerun.
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
        if not overwrite and not _own_failed_run(path, marker, run):
            raise RecipeError(
                f"output directory '{path}' is not empty (use --overwrite to replace a previous run)",
                field="output",
            )
        if not (path / marker).is_file():
            raise RecipeError(
                f"refusing to overwrite '{path}': it is not a {_kind(marker)} (no {marker})",
                field="output",
            )
        previous = _aside(path, "previous")
        try:
            os.replace(path, previous)
        except OSError as exc:
            raise StorageError(
                f"cannot move the previous run aside to '{previous}': {exc.strerror or exc} "
                f"(the previous run in '{path}' is unchanged)",
                str(path),
            ) from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if previous is not None:
            os.replace(previous, path)
        raise RecipeError(
            f"cannot create output directory '{path}': {exc}", field="output"
        ) from None
    if not os.access(path, os.W_OK):
        raise RecipeError(f"output directory '{path}' is not writable", field="output")
    return path, previous


def _own_failed_run(path: Path, marker: str, run: str | None) -> bool:
    """``path`` holds an unfinished run (no ``_SUCCESS``) of the recipe ``run``."""
    import json

    if run is None or marker != RUN_FILE or (path / SUCCESS).exists():
        return False
    try:
        return json.loads((path / RUN_FILE).read_text()) == json.loads(run)
    except (OSError, ValueError):
        return False


def discard_previous(previous: Path | None) -> None:
    """Delete the previous run moved aside by :func:`prepare_output` (after success)."""
    if previous is not None and previous.is_dir():
        shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def output_transaction(
    path: str | Path,
    overwrite: bool,
    resume: bool = False,
    marker: str = RUN_FILE,
    run: str | None = None,
):
    """Prepare the output directory, yield it, and keep it consistent; ``_SUCCESS`` last.

    Locally (:func:`prepare_output`) the run holds the output's lock (:mod:`raymix.lock`)
    throughout; on success the previous run (moved aside with
    ``overwrite``) is deleted. ``overwrite`` replaces only an output of the same kind, the one
    holding ``marker`` (a fit's ``run.json``, a score's ``score.json``). If the body raises, the previous run is moved back to ``path``
    unchanged, this run's partial outputs go to a hidden sibling ``.NAME.failed-PID``, and the
    error's message says where both are. Without a previous run (a fresh directory, or
    ``resume``) a failed run's outputs stay in place, where ``--resume`` finds its checkpoint,
    and the message says so; its plain rerun (``run``: the same ``run.json``) replaces them.
    A disk that refuses a write (full, read-only) is one :class:`StorageError` line naming
    the file (:mod:`raymix.files`).

    In an object store (:func:`prepare_remote`) the yielded :class:`~raymix.storage.Location`
    is the output itself, or with ``overwrite`` of a previous run a staging prefix that is
    published over it on success (its ``final`` names the output).
    """
    where = output_location(path)
    if isinstance(where, Location):
        out = prepare_remote(where, overwrite, resume, marker)
        stale = [p for p in stale_staging(where) if p != str(out)]
        try:
            yield out
        except BaseException as exc:
            if out != out.final:
                _tell(
                    exc,
                    f"the previous run in '{out.final}' is unchanged; this run's partial "
                    f"outputs are in '{out}'",
                )
            _name_leftovers(exc, stale)
            raise
        publish(out)
        for prefix in stale:  # superseded by this run
            storage.delete_tree(prefix)
        return
    with output_lock(local_output(path)):
        local, previous = prepare_output(path, overwrite, resume=resume, marker=marker, run=run)
        earlier = [p for p in leftovers(local) if p != previous]
        try:
            yield local
            write_text(local / SUCCESS, "")
        except BaseException as exc:
            _tell(exc, _restore(local, previous) if previous is not None else _left(local))
            _name_leftovers(exc, earlier)
            raise
        discard_previous(previous)
        for aside in earlier:  # superseded by this run
            shutil.rmtree(aside, ignore_errors=True)


def prepare_remote(
    root: Location, overwrite: bool, resume: bool = False, marker: str = RUN_FILE
) -> Location:
    """Check an object-store output before anything starts; return where the run writes."""
    storage.check_reachable(root)  # no bucket, no credentials, access denied: now, in one line
    has_run = storage.is_file(root / marker)
    if resume:
        staged = interrupted_staging(root)
        if staged is not None:  # an --overwrite run stopped before publishing: go on there
            return Location(staged, final=root)
        if not has_run:
            raise RecipeError(f"cannot resume: '{root}' holds no {RUN_FILE}", field="output")
        storage.delete_file(root / SUCCESS)
        return root
    if not storage.list_dir(root):
        return root
    if not overwrite:
        raise RecipeError(
            f"output directory '{root}' is not empty (use --overwrite to replace a previous run)",
            field="output",
        )
    if not has_run:
        raise RecipeError(
            f"refusing to overwrite '{root}': it is not a {_kind(marker)} (no {marker})",
            field="output",
        )
    staging = storage.join(root.parent, f".{root.name}.staging-{os.getpid()}")
    k = 1
    while storage.list_dir(staging if k == 1 else f"{staging}-{k}"):
        k += 1
    return Location(staging if k == 1 else f"{staging}-{k}", final=root)


def interrupted_staging(root: str | Path) -> str | None:
    """The staging prefix of an object-store run that replaced ``root`` with ``--overwrite``
    and stopped before publishing (it holds a checkpoint), where ``--resume`` goes on; None
    for a local output or when there is none. Two of them are refused, naming both."""
    where = storage.normal(root).rstrip("/")
    if not storage.is_uri(where):
        return None
    found = [
        prefix
        for prefix in stale_staging(Location(where))
        if storage.is_file(storage.join(prefix, "checkpoint", "state.json"))
    ]
    if len(found) > 1:
        raise RecipeError(
            f"cannot resume '{where}': two interrupted runs replaced it ({', '.join(found)}); "
            "delete the one not to resume",
            field="output",
        )
    return found[0] if found else None


def stale_staging(root: Location) -> list[str]:
    """The staging prefixes (``.NAME.staging-PID``) earlier failed runs of ``root`` left."""
    prefix = f".{root.name}.staging-"
    return [
        str(storage.join(root.parent, name))
        for name in storage.list_dir(root.parent)
        if name.startswith(prefix)
    ]


def publish(out: Location) -> None:
    """Finish an object-store output: ``_SUCCESS`` last; a staged run first replaces the
    previous one (its ``_SUCCESS`` goes first, so a half-published output is never taken
    for a complete one) and its staging prefix is removed."""
    final = Location(out.final)
    if out != final:
        storage.delete_file(final / SUCCESS)
        storage.delete_tree(final)
        storage.copy_tree(out, final)
    storage.write_text(final / SUCCESS, "")
    if out != final:
        storage.delete_tree(out)


def published(value, out):
    """``value`` (a run's file listing) with the staging prefix of ``out`` replaced by the
    output it is published to."""
    final = getattr(out, "final", None)
    if final is None or final == str(out):
        return value
    if isinstance(value, str):
        return final + value[len(out) :] if value.startswith(str(out)) else value
    if isinstance(value, dict):
        return {k: published(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [published(v, out) for v in value]
    return value


def final(out) -> Path:
    """Where the outputs written to ``out`` end up: a local path, or the object-store
    output as a :class:`~raymix.storage.Location` (typed as a path: it joins like one)."""
    return cast(Path, Location(out.final)) if isinstance(out, Location) else out


def _restore(out: Path, previous: Path) -> str:
    failed = _aside(out, "failed")
    try:
        os.replace(out, failed)
        os.replace(previous, out)
    except OSError as exc:
        return f"the previous run is kept in '{previous}': moving it back failed: {exc}"
    return f"the previous run in '{out}' is unchanged; this run's partial outputs are in '{failed}'"


def _left(out: Path) -> str:
    """What a failed run without a previous one leaves, and how to go on."""
    if (out / "checkpoint" / "state.json").is_file():
        return (
            f"this run's partial outputs stay in '{out}': --resume {out} continues from its "
            "checkpoint, a plain rerun replaces them"
        )
    return f"this run's partial outputs stay in '{out}': a plain rerun replaces them"


def _name_leftovers(exc: BaseException, found: list) -> None:
    if found:
        shown = ", ".join(f"'{p}'" for p in found)
        _tell(exc, f"earlier runs left {shown}: removed by the next successful run")


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
