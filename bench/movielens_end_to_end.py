"""End-to-end wall time of ``raymix fit recipes/movielens_lr.py`` on ml-100k, cold process.

Each run is a fresh ``raymix fit`` process: Python start, imports, Ray start, TensorFlow
import in the reading tasks, data reading, the coordinates and the writing are all inside
the wall time. The phases come from the run's ``summary.json``. GDMix needs ~2 minutes on
16 cores for the same pipeline (one pass).

    python bench/movielens_end_to_end.py [--passes 1 2 3] [--repeat 2] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"


def run_fit(data: Path, out: Path, passes: int) -> dict:
    env = dict(os.environ, RAYMIX_MOVIELENS=str(data))
    cmd = [
        sys.executable,
        "-m",
        "raymix.cli",
        "fit",
        str(REPO / "recipes" / "movielens_lr.py"),
        "--set",
        f"output={out}",
        "--set",
        f"passes={passes}",
        "--overwrite",
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    last = {}
    for step in summary["steps"]:
        last[(step["pass"], step["coordinate"])] = step["metrics"]["auc"]
    return {
        "passes": passes,
        "wall_seconds": round(wall, 2),
        "timings": summary["timings_seconds"],
        "auc": {f"pass{p}/{c}": round(v, 4) for (p, c), v in last.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raymix-bench-"))
    data = work / "movielens"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raymix.cli",
            "data",
            "movielens",
            "--source",
            str(args.source),
            "--dest",
            str(data),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results = []
    for passes in args.passes:
        for _ in range(args.repeat):
            results.append(run_fit(data, work / f"out-{passes}", passes))
            r = results[-1]
            print(
                f"passes={passes}: wall {r['wall_seconds']:.2f} s, phases {r['timings']}",
                flush=True,
            )
    print(
        "\n| passes | wall (s), best of runs | ray start | read | coordinates | write | final AUC |"
    )
    print("|---|---|---|---|---|---|---|")
    for passes in args.passes:
        best = min((r for r in results if r["passes"] == passes), key=lambda r: r["wall_seconds"])
        t = best["timings"]
        final = best["auc"][f"pass{passes}/per-movie"]
        print(
            f"| {passes} | {best['wall_seconds']:.2f} | {t.get('ray_start', 0):.2f} | {t.get('read', 0):.2f} "
            f"| {t.get('coordinates', 0):.2f} | {t.get('write', 0):.2f} | {final:.4f} |"
        )
    print("\nAUC after each coordinate (best run per pass count):")
    for passes in args.passes:
        best = min((r for r in results if r["passes"] == passes), key=lambda r: r["wall_seconds"])
        print(f"  passes={passes}: {best['auc']}")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "movielens_end_to_end.json").write_text(
        json.dumps(results, indent=1)
    )


if __name__ == "__main__":
    main()
