"""Run raymix benchmarks: ``python bench/run.py [NAME ...] [-- extra args]``.

Every benchmark is a script ``bench/<name>.py`` that prints a markdown table and writes its
figures as JSON to ``bench/results/<name>.json``. With no name, all of them run in turn.
Measured figures and the commands that produced them are kept in ``bench/BENCHMARKS.md``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(
        p.stem
        for p in HERE.glob("*.py")
        if p.stem not in ("run", "__init__") and not p.stem.startswith("_")
    )


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmarks {unknown}; available: {available()}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"## {name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra])
        print(f"({name}: exit {code}, {time.perf_counter() - started:.1f} s)\n", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
