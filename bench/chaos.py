"""Chaos: seeded ``raymix fit`` runs that each kill one thing at a moment of the run's
progress, compared with an undisturbed run, model file by model file and metric by metric.

    PYTHONPATH=$PWD python bench/chaos.py --runs 40 --seed 0 --out /tmp/chaos

Kinds of kill (run ``i`` gets ``kinds[i % len(kinds)]``):

* ``actor``: SIGKILL a bucket actor's process (``ray::BucketActor*``);
* ``fe-worker``: SIGKILL the fixed effect's Ray Train worker (``workers=1``);
* ``reading``: SIGKILL the worker running a read task (``MapBatches(_read_files)`` or the
  routing task ``_route_task``, which reads a file for the bucket actors);
* ``node``: on a two-node loopback cluster (``tests/loopback.py``: ``ray start`` on
  127.0.0.1, free ports, token auth), SIGKILL every process of the second node;
* ``driver``: SIGKILL the driver and the local Ray it started (its process group), then
  ``raymix fit --resume OUT``;
* ``sigint``: SIGINT to the driver's process group (Ctrl-C), then ``raymix fit --resume OUT``.

The moment comes from the run's own progress (``bench/chaos_watch.py``): an undisturbed run
records which steps (the checkpoint pointer's ``(pass, coordinate)``, or the start) each
target lives in and how long each step takes; a disturbed run draws one of those steps and a
fraction of its length from the seed, and kills the first target seen once it is that far.
A kill that did not land (the target was gone, or the run ended first) is retried with a
fresh draw, at most ``--attempts`` times. A run *finished* when its command (and the resume)
exited 0; it is *identical* when every output file equals the undisturbed run's
(``bench/chaos_compare.py``). Only processes this script started (or their descendants)
are ever signalled; the cluster is torn down by session, never with ``ray stop``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos_compare import differences, digests
from chaos_watch import REPO, START, Kill, finish, one_run, raymix_env, run_command

from tests.loopback import LoopbackCluster

MOVIELENS_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"
KINDS = ("actor", "fe-worker", "reading", "node", "driver", "sigint")
BASE = ["passes=2"]
OVERRIDES = {"fe-worker": [*BASE, "coordinates.global.workers=1"]}


@dataclass
class Outcome:
    run: int
    kind: str
    attempts: int = 0
    point: str = ""  # the drawn progress point and delay
    killed: str = ""  # what was signalled
    at: str = ""  # when: the step it landed in, seconds into it and into the run
    landed: bool = False
    finished: bool = False
    identical: bool = False
    resumed: bool = False
    seconds: float = 0.0
    differ: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Baseline:
    digests: dict[str, str]
    lengths: dict[tuple[int, int], float]  # progress point -> seconds until the next one
    alive: dict[str, list[tuple[int, int]]]  # target -> the points it lives in
    seconds: float


def make_data(work: Path) -> Path:
    dest = work / "movielens-parquet"
    if not (dest / "_done").exists():
        subprocess.run(
            [sys.executable, "-m", "raymix.cli", "data", "movielens", "--source",
             str(MOVIELENS_SOURCE), "--dest", str(dest), "--format", "parquet", "--overwrite"],
            check=True, cwd=REPO, env=raymix_env(dest), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (dest / "_done").write_text("")
    return dest


def fresh(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def baseline(work: Path, name: str, overrides, data, cluster=None) -> Baseline:
    out = fresh(work / "baseline" / name)
    started = time.monotonic()
    code, watch, log = one_run(out, overrides, data, cluster=cluster)
    seconds = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"the undisturbed run '{name}' failed ({code}): {log}")
    points = sorted(watch.reached)
    ends = [watch.reached[p] for p in points[1:]] + [watch.now()]
    lengths = {p: end - watch.reached[p] for p, end in zip(points, ends, strict=True)}
    alive = {group: sorted(found) for group, found in watch.alive.items()}
    shown = ", ".join(f"{g} in {len(p)} of {len(points)} steps" for g, p in alive.items())
    print(f"baseline {name}: {seconds:.1f} s; {shown}", flush=True)
    return Baseline(digests(out), lengths, alive, seconds)


def draw(rng: random.Random, kind: str, base: Baseline) -> Kill:
    """A step the target lives in (for the driver: one after the first checkpoint, so that
    the resume has one to start from), and a fraction of its length."""
    points = base.alive.get(kind) or [START]
    if kind in ("driver", "sigint"):
        points = [p for p in points if p != START] or points
    point = rng.choice(points)
    return Kill(kind, point, rng.random() * 0.8 * base.lengths.get(point, 1.0))


def attempt(work, n, kind, kill: Kill, data, cluster=None) -> tuple[Outcome, Path | None]:
    outcome = Outcome(n, kind, point=f"{list(kill.point)} +{kill.delay:.1f} s")
    out = fresh(work / "runs" / f"{n:03d}-{kind}")
    if cluster is not None and not cluster.node_session:  # lost in the run before
        cluster.start_second_node()
    started = time.monotonic()
    code, watch, log = one_run(out, OVERRIDES.get(kind, BASE), data, kill, cluster)
    outcome.killed, outcome.at, outcome.landed = watch.killed, watch.at, watch.landed
    if kind in ("driver", "sigint") and code != 0:
        outcome.resumed = True
        resume = [sys.executable, "-m", "raymix.cli", "fit", "--resume", str(out), "--quiet"]
        code = finish(run_command(resume, raymix_env(data), log))
    outcome.seconds = round(time.monotonic() - started, 1)
    outcome.finished = code == 0
    if not outcome.finished:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        outcome.note = f"exit {code}: {' '.join(tail)[:300]}"
        return outcome, None
    return outcome, out


def disturbed(work, n, kind, rng, data, base: Baseline, attempts: int, cluster=None) -> Outcome:
    """One run of ``kind``, tried again (a fresh draw) while its kill does not land."""
    for tried in range(1, attempts + 1):
        outcome, out = attempt(work, n, kind, draw(rng, kind, base), data, cluster)
        outcome.attempts = tried
        if outcome.landed or not outcome.finished:
            break
    if out is not None:
        outcome.differ = differences(base.digests, digests(out))
        outcome.identical = not outcome.differ
        if outcome.identical:  # keep what differs, for a look
            shutil.rmtree(out, ignore_errors=True)
            out.with_suffix(".log").unlink(missing_ok=True)
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'kind':10} {'runs':>4} {'landed':>6} {'finished':>8} {'identical':>9} {'tries':>5}"]
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            lines.append(
                f"{kind:10} {len(mine):4d} {sum(o.landed for o in mine):6d} "
                f"{sum(o.finished for o in mine):8d} {sum(o.identical for o in mine):9d} "
                f"{sum(o.attempts for o in mine):5d}"
            )
    return "\n".join(lines)


def main() -> int:
    # A shell without job control starts a background command (``python bench/chaos.py &``)
    # with SIGINT ignored, and its children inherit that: every ``sigint`` run would be
    # undisturbed. A Python handler here is reset to the default in each child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attempts", type=int, default=3, help="tries per run at most")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "raymix-chaos")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in KINDS if k in args.kinds]
    plan = [(n, kinds[n % len(kinds)]) for n in range(args.runs)]
    data = make_data(args.out)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    results = args.out / "results.json"

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        print(
            f"run {outcome.run:3d} {outcome.kind:9} drawn {outcome.point}: killed "
            f"{outcome.killed or '-'} {outcome.at}; landed={outcome.landed} "
            f"finished={outcome.finished} identical={outcome.identical} "
            f"tries={outcome.attempts} ({outcome.seconds} s) {outcome.note} "
            f"{' '.join(outcome.differ[:4])}",
            flush=True,
        )
        text = json.dumps({"seed": args.seed, "runs": [asdict(o) for o in outcomes]}, indent=1)
        results.write_text(text + "\n")

    bases: dict[str, Baseline] = {}
    for n, kind in (p for p in plan if p[1] != "node"):
        name = "fe-worker" if kind == "fe-worker" else "lr"
        if name not in bases:
            bases[name] = baseline(args.out, name, OVERRIDES.get(kind, BASE), data)
        rng = random.Random(f"{args.seed}-{n}")
        record(disturbed(args.out, n, kind, rng, data, bases[name], args.attempts))
    nodes = [p for p in plan if p[1] == "node"]
    if nodes:
        cluster = LoopbackCluster()
        try:
            cluster.start()
            on_cluster = baseline(args.out, "cluster", BASE, data, cluster)
            if "lr" in bases and bases["lr"].digests != on_cluster.digests:
                print("note: the undisturbed run on the cluster differs from the local one")
            for n, kind in nodes:
                rng = random.Random(f"{args.seed}-{n}")
                record(disturbed(args.out, n, kind, rng, data, on_cluster, args.attempts, cluster))
        finally:
            cluster.stop()
    print(table(outcomes))
    count = max(len(outcomes), 1)
    finished = sum(o.finished for o in outcomes)
    identical = sum(o.identical for o in outcomes)
    landed = sum(o.landed for o in outcomes)
    print(
        f"{len(outcomes)} runs (seed {args.seed}), {sum(o.attempts for o in outcomes)} tries: "
        f"{landed} kills landed ({100 * landed / count:.0f}%), {finished} finished "
        f"({100 * finished / count:.0f}%), {identical} bit-identical "
        f"({100 * identical / count:.0f}%) in {time.monotonic() - started:.0f} s; "
        f"results in {results}"
    )
    return 0 if finished == identical == landed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
