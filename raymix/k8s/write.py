"""Write the manifests of a recipe, and the committed examples in ``k8s/``.

Regenerate the examples with ``python -m raymix.k8s`` (``--check`` only compares).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from raymix.errors import RecipeError
from raymix.files import write_text
from raymix.k8s.crd import validate_manifest
from raymix.k8s.names import MAX_NAME_LENGTH
from raymix.k8s.render import render_raycluster, render_rayjob, to_yaml
from raymix.k8s.shape import ClusterShape

MANIFEST_FILES = {"RayCluster": "raycluster.yaml", "RayJob": "rayjob.yaml"}
EXAMPLE_RECIPE = "recipes/movielens_lr.py"


def _header(recipe_path: str) -> str:
    shown = " ".join(recipe_path.splitlines())  # a comment must stay on one line
    return f"# Rendered by raymix.k8s for {shown}; re-render rather than edit by hand.\n"


def _render_pair(name, recipe_path, shape, **job_options) -> dict[str, tuple[dict, str]]:
    manifests = [
        render_raycluster(name, shape),
        render_rayjob(name, recipe_path, shape, **job_options),
    ]
    return {MANIFEST_FILES[m["kind"]]: (m, _header(recipe_path) + to_yaml(m)) for m in manifests}


def write_manifests(
    out_dir,
    name: str,
    recipe_path: str,
    shape: ClusterShape,
    *,
    fit_args: Sequence[str] = (),
    runtime_env: dict | None = None,
    shutdown_after_finish: bool = True,
    ttl_seconds: int = 600,
    crd_dir: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``raycluster.yaml`` and ``rayjob.yaml`` into ``out_dir`` (created if missing).

    Both are rendered, and validated when ``crd_dir`` is given, before either is written;
    each is written to a temporary file then renamed. Existing manifests are refused unless
    ``overwrite``. Returns the two paths.
    """
    rendered = _render_pair(
        name,
        recipe_path,
        shape,
        fit_args=fit_args,
        runtime_env=runtime_env,
        shutdown_after_finish=shutdown_after_finish,
        ttl_seconds=ttl_seconds,
    )
    if crd_dir is not None:
        for manifest, _ in rendered.values():
            validate_manifest(manifest, crd_dir)
    out = Path(out_dir)
    paths = [out / filename for filename in rendered]
    if not overwrite:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise RecipeError(
                f"{', '.join(existing)} already exist; pass overwrite=True (raymix k8s render --overwrite) to replace them",
                field="out_dir",
            )
    out.mkdir(parents=True, exist_ok=True)
    for path, (_, text) in zip(paths, rendered.values(), strict=True):
        write_text(path, text)
    return paths


def name_for_recipe(recipe_path: str) -> str:
    """``raymix-<recipe stem>`` as a DNS-1035 label short enough for a RayJob."""
    stem = PurePosixPath(recipe_path.replace(os.sep, "/")).stem.lower()
    stem = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")
    return f"raymix-{stem}"[: MAX_NAME_LENGTH["RayJob"]].rstrip("-")


def render_for_recipe(
    recipe_path: str,
    out_dir,
    shape: ClusterShape,
    fit_args: Sequence[str] = (),
    *,
    name: str | None = None,
    runtime_env: dict | None = None,
    crd_dir: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """What ``raymix k8s render`` calls: :func:`write_manifests` named after the recipe.

    The recipe is not read here: it is run inside the image (``shape.app_dir``) or from the
    shared volume, so ``recipe_path`` is the path as the pods see it.
    """
    return write_manifests(
        out_dir,
        name or name_for_recipe(recipe_path),
        recipe_path,
        shape,
        fit_args=fit_args,
        runtime_env=runtime_env,
        crd_dir=crd_dir,
        overwrite=overwrite,
    )


def recipe_paths(recipe) -> list[str]:
    """Every path a recipe reads or writes: its output, data, metadata, feature lists,
    warm starts, external scores and vocabularies."""
    paths = [recipe.output]
    for data in [recipe.data, *(c.data for c in recipe.coordinates if c.data is not None)]:
        for value in (data.train, data.validation, data.metadata, data.feature_lists):
            paths += [value] if isinstance(value, str) else list(value or ())
    for c in recipe.coordinates:
        for name in ("warm_start", "train_scores", "validation_scores", "vocab"):
            value = getattr(c, name, None)
            paths += [value] if value else []
    return paths


def _readable_recipe(recipe_path: str, overrides: Sequence[str], env: dict[str, str] | None):
    """The recipe read here with the job's overrides and environment; None when it cannot be
    read here (it may exist only in the image or on the volume)."""
    from raymix.errors import RaymixError
    from raymix.recipe.load import load_recipe

    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        return load_recipe(recipe_path, overrides)
    except RaymixError:
        return None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def needs_data_volume(
    recipe_path: str, overrides: Sequence[str] = (), env: dict[str, str] | None = None
) -> bool:
    """Whether the job needs a shared volume: False when the recipe (read here with the
    job's overrides and environment, if it is here to read) keeps every input and output in
    an object store; True when any path is local, or the recipe cannot be read here."""
    from raymix import storage

    recipe = _readable_recipe(recipe_path, overrides, env)
    if recipe is None:
        return True
    return not all(storage.is_uri(path) for path in recipe_paths(recipe))


def relative_paths(
    recipe_path: str, overrides: Sequence[str] = (), env: dict[str, str] | None = None
) -> list[str]:
    """The recipe's paths that are neither absolute nor URIs (none when it cannot be read)."""
    from raymix import storage

    recipe = _readable_recipe(recipe_path, overrides, env)
    if recipe is None:
        return []
    paths = [str(p) for p in recipe_paths(recipe)]
    return [p for p in paths if not storage.is_uri(p) and not os.path.isabs(p)]


def render_note(written: Sequence[Path], out_dir, relative: Sequence[str], app_dir: str) -> str:
    """What ``raymix k8s render`` tells its user: the files, how to apply them, and a warning
    about the recipe's relative paths (resolved inside the pods, not where it was rendered)."""
    lines = [f"wrote {len(written)} manifest{'' if len(written) == 1 else 's'} to {out_dir}:"]
    lines += [f"  {path}" for path in written]
    rayjob = next((p for p in written if Path(p).name == MANIFEST_FILES["RayJob"]), None)
    if rayjob is not None:
        lines.append(f"run the job: kubectl apply -f {rayjob}")
    if relative:
        shown = ", ".join(relative[:3]) + (
            f" and {len(relative) - 3} more" if len(relative) > 3 else ""
        )
        lines.append(
            f"warning: the recipe's relative paths ({shown}) are resolved inside the pods "
            f"(from {app_dir} in the image), not here: make them exist there, or give "
            "absolute paths on the shared volume or object-store URIs"
        )
    return "\n".join(lines)


def example_manifests() -> dict[str, str]:
    """The text of the committed ``k8s/*.yaml``: ``recipes/movielens_lr.py``, 2 workers."""
    rendered = _render_pair(name_for_recipe(EXAMPLE_RECIPE), EXAMPLE_RECIPE, ClusterShape())
    return {filename: text for filename, (_, text) in rendered.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m raymix.k8s [--check] [DIR]``: regenerate (or compare) the examples."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    out = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "k8s"
    stale = []
    for filename, text in example_manifests().items():
        path = out / filename
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
    verb = "out of date" if check else "written"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if check and stale else 0
