"""``l2="auto"`` of the logistic and Poisson tasks on movieLens, by one raymix tree against
another (issue 20: the linear task's variance components must leave them as good).

    PYTHONPATH=$PWD python bench/auto_l2_movielens.py --trees /tmp/before . [--passes 3]

Each tree (a raymix checkout, e.g. ``git worktree add /tmp/before COMMIT``) fits GDMix's
movieLens recipe with both random effects at ``l2="auto"``, in a fresh ``raymix fit``
process with that tree on ``PYTHONPATH``; the table has each task's final validation AUC,
logloss and the chosen l2s, and the AUC difference from the first tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOVIELENS_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"
TASKS = ("logistic", "poisson")
COORDINATES = ("global", "per-user", "per-movie")


def fit(tree: Path, task: str, passes: int, data: Path, out: Path) -> dict:
    sets = [f"passes={passes}", f"output={out}"]
    sets += [f"coordinates.{c}.l2=auto" for c in COORDINATES[1:]]
    sets += [f"coordinates.{c}.task={task}" for c in COORDINATES]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(tree), "RAYMIX_MOVIELENS": str(data)}
    recipe = tree / "recipes" / "movielens_lr.py"
    command = [sys.executable, "-m", "raymix.cli", "fit", str(recipe), *args, "--overwrite", "--quiet"]  # fmt: skip
    # cwd: ``python -m`` puts it first on sys.path, before PYTHONPATH
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    last = {s["coordinate"]: s for s in summary["steps"] if s["pass"] == passes}
    metrics = last["per-movie"]["metrics"]
    return {
        "auc": metrics["auc"],
        "logloss": metrics["logloss"],
        "l2": {c: last[c].get("l2") for c in COORDINATES[1:]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[REPO])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "raymix-auto-l2")
    args = parser.parse_args()
    data = args.work / "movielens"
    if not (data / "_done").exists():
        subprocess.run(
            [sys.executable, "-m", "raymix.cli", "data", "movielens", "--source",
             str(MOVIELENS_SOURCE), "--dest", str(data), "--overwrite"],
            check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (data / "_done").write_text("")
    print("| tree | task | AUC | logloss | l2 per-user / per-movie | AUC - first tree's |")
    print("|---|---|---:|---:|---|---:|")
    first: dict[str, float] = {}
    for k, tree in enumerate(args.trees):
        for task in TASKS:
            got = fit(tree.resolve(), task, args.passes, data, args.work / "out" / f"{k}-{task}")
            first.setdefault(task, got["auc"])
            l2 = " / ".join(f"{v:.4g}" for v in got["l2"].values())
            print(
                f"| {tree} | {task} | {got['auc']:.4f} | {got['logloss']:.4f} | {l2} "
                f"| {got['auc'] - first[task]:+.5f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
