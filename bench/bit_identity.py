"""Bit-identity of raymix's outputs across a refactor: fit fixed cases, hash every model,
score file and metric, and compare with the hashes recorded before.

    python bench/bit_identity.py record [--cases NAME ...]   # writes bench/bit_identity.json
    python bench/bit_identity.py check  [--cases NAME ...]   # exit 1 on any difference

The hashes in ``bench/bit_identity.json`` were recorded at commit 95533ff (before the
architecture refactor of issue 15), except two re-recorded on purpose by issue 20:
``movielens-linear`` (a linear ``l2="auto"`` now estimates the residual variance: its l2s,
models and metrics change) and ``movielens-lr-auto-3pass`` (``summary.json`` gains
``variance_components``; every model, score file and metric stayed identical, checked first).

Cases: movieLens LR (GDMix's recipe; three passes with ``l2="auto"``; linear and Poisson
tasks; L1 and variances), movieLens DeText (the deep coordinate) and a 1M-row synthetic set.
Each case is a fresh ``raymix fit`` process on data made by ``raymix data``; the data sets
are generated once into ``--work`` (default: a directory under the system's temp dir).

What is hashed, per output file (paths relative to the run's output):

* Avro files (models, scores): the decoded records, every float by its exact ``repr``;
* JSON files: the content without what changes from run to run by nature (timings,
  seconds, process ids, absolute paths);
* anything else (a deep coordinate's SavedModel variables): the bytes. ``saved_model.pb``
  and the report page are left out (they embed timings or are not deterministic).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import fastavro

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "bench" / "bit_identity.json"
MOVIELENS_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"

#: name -> (recipe, data set, --set overrides)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "movielens-lr": ("movielens_lr.py", "movielens", []),
    "movielens-lr-auto-3pass": (
        "movielens_lr.py",
        "movielens",
        ["passes=3", "coordinates.per-user.l2=auto", "coordinates.per-movie.l2=auto"],
    ),
    "movielens-linear": (
        "movielens_lr.py",
        "movielens",
        [
            "metric=rmse",
            "passes=2",
            "coordinates.global.task=linear",
            "coordinates.per-user.task=linear",
            "coordinates.per-movie.task=linear",
            "coordinates.per-user.l2=auto",
        ],
    ),
    "movielens-poisson": (
        "movielens_lr.py",
        "movielens",
        [
            "metric=logloss",
            "coordinates.global.task=poisson",
            "coordinates.per-user.task=poisson",
            "coordinates.per-movie.task=poisson",
        ],
    ),
    "movielens-l1-variances": (
        "movielens_lr.py",
        "movielens",
        [
            "passes=2",
            "coordinates.global.l1=2.0",
            "coordinates.global.variance=full",
            "coordinates.per-user.variance=simple",
            "coordinates.per-movie.variance=full",
            "coordinates.per-movie.l1=0.5",
            "coordinates.per-user.min_samples=20",
            "coordinates.per-user.max_samples=100",
        ],
    ),
    "movielens-detext": ("movielens_detext.py", "movielens", []),
    "synthetic-1m": ("synthetic_glmix.py", "synthetic-1m", []),
    # worker groups: the fixed effect on 2 Ray Train workers, the deep one on 2 (TF collectives)
    "movielens-lr-2-workers": ("movielens_lr.py", "movielens", ["coordinates.global.workers=2"]),
    "movielens-detext-2-workers": (
        "movielens_detext.py",
        "movielens",
        ["coordinates.global.workers=2", "coordinates.global.steps=200"],
    ),
    "movielens-detext-horovod": (
        "movielens_detext.py",
        "movielens",
        [
            "coordinates.global.workers=2",
            "coordinates.global.backend=horovod",
            "coordinates.global.steps=200",
        ],
    ),
}

VOLATILE = ("seconds", "per_second", "timings", "pid", "files", "output", "restarts", "rebuilds")


def raymix(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "raymix.cli", *args]
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)


def make_data(name: str, work: Path) -> Path:
    dest = work / name
    if (dest / "_done").exists():
        return dest
    if name == "movielens":
        raymix(
            "data",
            "movielens",
            "--source",
            str(MOVIELENS_SOURCE),
            "--dest",
            str(dest),
            "--overwrite",
        )
    else:
        raymix(
            "data", "synthetic", "--dest", str(dest), "--rows", "1000000", "--users", "100000",
            "--items", "10000", "--rows-per-file", "250000", "--overwrite", "--quiet",
        )  # fmt: skip
    (dest / "_done").write_text("")
    return dest


def stable(value):
    """JSON content without the fields that vary between identical runs."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not any(word in k for word in VOLATILE)}
    if isinstance(value, list):
        return [stable(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    if path.suffix == ".avro":
        with path.open("rb") as handle:
            for record in fastavro.reader(handle):
                digest.update(json.dumps(stable(record), sort_keys=True).encode())
    elif path.suffix == ".json":
        digest.update(json.dumps(stable(json.loads(path.read_text())), sort_keys=True).encode())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


SKIPPED = {"report.html", "saved_model.pb", "fingerprint.pb", "run.json", "_SUCCESS"}


def output_digests(out: Path) -> dict[str, str]:
    return {
        str(path.relative_to(out)): file_digest(path)
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name not in SKIPPED
    }


def run_case(name: str, work: Path) -> dict[str, str]:
    recipe, data, overrides = CASES[name]
    root = make_data(data, work)
    out = work / "out" / name
    env = {
        **os.environ,
        "RAYMIX_MOVIELENS": str(work / "movielens"),
        "RAYMIX_SYNTHETIC": str(root),
    }
    sets = [arg for o in [*overrides, f"output={out}"] for arg in ("--set", o)]
    raymix("fit", str(REPO / "recipes" / recipe), *sets, "--overwrite", "--quiet", env=env)
    return output_digests(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "check"])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "raymix-bitid")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    failures = 0
    for name in args.cases:
        digests = run_case(name, args.work)
        if args.mode == "record":
            recorded[name] = digests
            print(f"{name}: recorded {len(digests)} files")
            continue
        expected = recorded.get(name)
        if expected is None:
            print(f"{name}: no recorded hashes")
            failures += 1
            continue
        differ = sorted(
            k for k in expected.keys() | digests.keys() if expected.get(k) != digests.get(k)
        )
        failures += bool(differ)
        print(
            f"{name}: {'identical' if not differ else 'DIFFERENT: ' + ', '.join(differ[:8])} ({len(digests)} files)"
        )
    if args.mode == "record":
        RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
