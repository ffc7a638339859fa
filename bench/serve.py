"""raymix serve at 1M users and 100k items, against a bare Ray Serve deployment, same run.

The run: the synthetic GLMix recipe (a dense global bag of 50 features, sparse per-user and
per-item bags of 10) is fitted on a small generated set (20k rows), then its random effects'
Avro models are replaced by synthesized ones: ``--users`` user models and ``--items`` item
models, an intercept and 10 coefficients each, written with raymix's own model writer (the
same files a fit writes). A second run (other coefficients) is made the same way for the swap.

Measured, in one Serve instance on 127.0.0.1, with one load generator (bench/serve_load.py:
asyncio + aiohttp, a closed loop of ``--concurrency`` requests, a fixed count and a time cap):

* the models' load time (in this process, and the replica's own) and the replica's memory;
* single-row requests to raymix and to :class:`raymix.serving.app.Constant` (a deployment
  that answers a constant: Serve's own floor), alternated over ``--rounds``: throughput ratio
  (target >= 0.8) and p99 ratio (target <= 1.3);
* requests of 1,000 rows: rows/s (target >= 100,000), the same rows in the row form
  (``{"rows": [...]}``), as JSON columns (``{"columns": {...}}``) and as an Arrow IPC stream
  (:mod:`raymix.serving.columnar`), the last also answered as Arrow (``Accept``,
  :mod:`raymix.serving.responses`), rounds alternated with the bare deployment's (sent the
  row-form bodies, and the Arrow bodies); each form's response checked against the scores
  computed here, and its size recorded;
* a swap to the second run under single-row load: failed requests (target 0), and every
  response checked against both runs' scores computed here (exactly one must match, to 1e-6).

    python bench/serve.py [--users 1000000] [--items 100000] [--work /tmp/raymix-bench-serve]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from serve_load import run_load  # noqa: E402

COEFFICIENTS = 10  # per entity, the synthetic set's entity features


def fit_small(work: Path) -> Path:
    """The synthetic recipe fitted on 20k generated rows (once per work directory)."""
    from raymix.datasets.synthetic import generate_synthetic
    from raymix.recipe.load import load_recipe
    from raymix.run import fit

    data, out = work / "data", work / "fit"
    if not (data / "summary.json").exists():
        generate_synthetic(data, rows=20_000, users=2_000, items=500, seed=0, overwrite=True)
    if not (out / "run.json").exists():
        os.environ["RAYMIX_SYNTHETIC"] = str(data)
        fit(load_recipe(REPO / "recipes" / "synthetic_glmix.py", [f"output={out}"]))
    return out


def synthesize(fitted: Path, dest: Path, users: int, items: int, seed: int) -> dict:
    """A copy of the fitted run whose random effects hold ``users`` / ``items`` models."""
    from raymix.coordinates.inputs import feature_names
    from raymix.data.avro.model_writer import write_model_file
    from raymix.data.avro.models import MODEL_CLASS
    from raymix.recipe.load import load_recipe

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(fitted, dest)
    recipe = load_recipe(dest / "run.json")
    rng = np.random.default_rng(seed)
    seconds = {}
    for name, entities in (("per-user", users), ("per-item", items)):
        spec = recipe.coordinate(name)
        names = feature_names(recipe.data_for(spec), spec.feature_bag, COEFFICIENTS)
        models = dest / name / "models"
        for old in models.iterdir():
            old.unlink()
        start = time.perf_counter()
        write_model_file(
            models / "part-00000.avro",
            np.arange(entities),
            intercepts=rng.normal(scale=0.3, size=entities),
            coef_ptr=np.arange(entities + 1, dtype=np.int64) * COEFFICIENTS,
            coef_index=np.tile(np.arange(COEFFICIENTS), entities),
            coef_value=rng.normal(scale=0.15, size=entities * COEFFICIENTS),
            names=names,
            model_class=MODEL_CLASS["logistic"],
        )
        seconds[name] = round(time.perf_counter() - start, 1)
    return seconds


def request_rows(n: int, users: int, items: int, seed: int) -> list[dict]:
    """``n`` rows of the run's layout: random features, users and items (all with models)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        rows.append(
            {
                "uid": k,
                "user_id": int(rng.integers(users)),
                "item_id": int(rng.integers(items)),
                "global": [round(float(v), 6) for v in rng.normal(size=50)],
                "per_user": {str(j): round(float(rng.normal()), 6) for j in range(COEFFICIENTS)},
                "per_item": {str(j): round(float(rng.normal()), 6) for j in range(COEFFICIENTS)},
            }
        )
    return rows


def request_columns(rows: list[dict]) -> dict:
    """``rows`` of :func:`request_rows` as the columns of a columnar body."""
    columns: dict = {name: [row[name] for row in rows] for name in ("uid", "user_id", "item_id")}
    columns["global"] = [row["global"] for row in rows]
    for bag in ("per_user", "per_item"):
        columns[bag] = {
            "indices": [[int(j) for j in row[bag]] for row in rows],
            "values": [list(row[bag].values()) for row in rows],
        }
    return columns


def arrow_stream(columns: dict, narrow: bool = False) -> bytes:
    """:func:`request_columns` as an Arrow IPC stream: the dense bag a fixed_size_list, the
    sparse bags struct<indices: list<int32>, values: list<double>>; ``narrow``: the ids
    int32 and the values float32 (as GDMix's TFRecords hold features)."""
    import pyarrow as pa

    ids, number = (pa.int32(), pa.float32()) if narrow else (pa.int64(), pa.float64())
    arrays = {name: pa.array(columns[name], ids) for name in ("uid", "user_id", "item_id")}
    arrays["global"] = pa.array(columns["global"], pa.list_(number, 50))
    for bag in ("per_user", "per_item"):
        arrays[bag] = pa.StructArray.from_arrays(
            [
                pa.array(columns[bag]["indices"], pa.list_(pa.int32())),
                pa.array(columns[bag]["values"], pa.list_(number)),
            ],
            names=["indices", "values"],
        )
    table = pa.table(arrays)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


ARROW = "application/vnd.apache.arrow.stream"


def as_float32(rows: list[dict]) -> list[dict]:
    """``rows`` with every feature value rounded to float32 (what a narrow body carries)."""

    def rounded(v):
        return float(np.float32(v))

    out = []
    for row in rows:
        row = dict(row, **{"global": [rounded(v) for v in row["global"]]})
        for bag in ("per_user", "per_item"):
            row[bag] = {j: rounded(v) for j, v in row[bag].items()}
        out.append(row)
    return out


def expected_scores(run, rows: list[dict]) -> np.ndarray:
    from raymix.serving.requests import parse_rows

    return run.score(parse_rows(rows, run.layout)).total


def measure_load(output: Path) -> dict:
    import psutil

    from raymix.serving.model import load_run

    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    run = load_run(output)
    return {
        "run": run,
        "seconds": round(time.perf_counter() - start, 2),
        "model_bytes": run.nbytes,
        "rss_growth_bytes": psutil.Process().memory_info().rss - before,
    }


def single_rounds(urls: dict, bodies: list[bytes], args) -> dict:
    out: dict = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():  # the same generator, one after the other
            r = run_load(
                url, bodies, count=args.requests, concurrency=args.concurrency, max_seconds=120
            )
            out[name].append(r.summary())
            print(json.dumps({f"single/{name}": out[name][-1]}), flush=True)
    return out


def swap_under_load(url: str, bodies: list[bytes], expected: dict, new: Path, args) -> dict:
    import raymix.serving

    timing: dict = {}

    async def swap(result) -> None:
        while len(result.status) < args.requests // 4:
            await asyncio.sleep(0.01)
        timing["started"] = time.perf_counter()
        done = await asyncio.to_thread(raymix.serving.swap, new, app="raymix", timeout=600)
        timing["returned"] = time.perf_counter()
        timing["replicas"] = done["replicas"]

    r = run_load(
        url,
        bodies,
        count=args.requests * 3,
        concurrency=args.concurrency,
        max_seconds=300,
        keep=True,
        during=swap,
    )
    scored_by: dict[str, int] = dict.fromkeys(expected, 0)
    mis = 0
    for k, status, body, sent in zip(r.index, r.status, r.body, r.sent, strict=True):
        if status != 200:
            continue
        answer = json.loads(body)
        score = answer["predictions"][0]["score"]
        matches = [o for o, e in expected.items() if abs(e[k] - score) <= 1e-6]
        if matches != [answer["output"]] or (
            sent > timing.get("returned", np.inf) and answer["output"] != str(new)
        ):
            mis += 1
        scored_by[answer["output"]] += 1
    return {
        **r.summary(),
        "misscored": mis,
        "scored_by": {Path(o).name: n for o, n in scored_by.items()},
        "swap_seconds": round(timing["returned"] - timing["started"], 2) if timing else None,
        "errors": r.errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1500, help="per single-row round")
    parser.add_argument("--batch-requests", type=int, default=200, help="1,000-row requests")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-rounds", type=int, default=3, help="1,000-row rounds")
    parser.add_argument(
        "--batch-only", action="store_true", help="only the 1,000-row rounds (no single, swap)"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/raymix-bench-serve"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import psutil
    import ray
    from ray import serve as ray_serve

    import raymix.serving
    from raymix.serving.app import Constant

    args.work.mkdir(parents=True, exist_ok=True)
    # address="local": its own Ray, never a cluster another process started on this machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    results: dict = {"users": args.users, "items": args.items, "cores": psutil.cpu_count()}
    fitted = fit_small(args.work)
    one, two = (args.work / "run-1").resolve(), (args.work / "run-2").resolve()
    results["write_seconds"] = synthesize(fitted, one, args.users, args.items, seed=1)
    if not args.batch_only:
        synthesize(fitted, two, args.users, args.items, seed=2)
    loaded = measure_load(one)
    run_1 = loaded.pop("run")
    results["load_in_process"] = loaded
    print(json.dumps(results), flush=True)

    rows = request_rows(256, args.users, args.items, seed=3)
    single = [json.dumps({"rows": [row]}).encode() for row in rows]
    big = request_rows(1000 * 8, args.users, args.items, seed=4)
    chunks = [big[k : k + 1000] for k in range(0, len(big), 1000)]
    batches = [json.dumps({"rows": rows}).encode() for rows in chunks]
    as_columns = [request_columns(rows) for rows in chunks]
    arrow_bodies = [arrow_stream(c) for c in as_columns]
    narrow_bodies = [arrow_stream(c, narrow=True) for c in as_columns]
    forms = {  # name: (url key, bodies, content type, the answer's form)
        "bare": ("bare", batches, "application/json", None),
        "raymix": ("raymix", batches, "application/json", None),
        "raymix-columns": (
            "raymix",
            [json.dumps({"columns": c}).encode() for c in as_columns],
            "application/json",
            None,
        ),
        "raymix-arrow": ("raymix", arrow_bodies, ARROW, None),
        "raymix-arrow-answer": ("raymix", arrow_bodies, ARROW, ARROW),  # Arrow both ways
        "bare-arrow": ("bare", arrow_bodies, ARROW, None),  # Serve's floor for the smaller bodies
        "raymix-arrow32-answer": ("raymix", narrow_bodies, ARROW, ARROW),  # float32 features
        "bare-arrow32": ("bare", narrow_bodies, ARROW, None),
    }
    results["body_bytes"] = {name: len(bodies[0]) for name, (_, bodies, _, _) in forms.items()}

    port = 8731
    ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
    ray_serve.run(Constant.bind(), name="bare", route_prefix="/bare")  # type: ignore[attr-defined]
    start = time.perf_counter()
    base = raymix.serving.serve(one, port=port, app="raymix", route_prefix="/raymix")
    results["deploy_seconds"] = round(time.perf_counter() - start, 1)
    urls = {"bare": f"http://127.0.0.1:{port}/bare", "raymix": f"{base}/predict"}
    import httpx

    about = httpx.get(f"{base}/", timeout=60).json()
    results["replica"] = {
        "load_seconds": about["load_seconds"],
        "model_bytes": about["model_bytes"],
        "memory_bytes": about["replica_memory_bytes"],
    }
    print(json.dumps(results["replica"]), flush=True)
    for url in urls.values():  # warm up both
        run_load(url, single, count=100, concurrency=args.concurrency, max_seconds=60)
    for key, bodies, content_type, accept in forms.values():
        run_load(
            urls[key],
            bodies,
            count=8,
            concurrency=4,
            max_seconds=60,
            content_type=content_type,
            accept=accept,
        )
    expected = {name: expected_scores(run_1, chunks[0]) for name in forms}
    expected["raymix-arrow32-answer"] = expected_scores(run_1, as_float32(chunks[0]))
    results["answer_bytes"] = check_forms(urls["raymix"], forms, expected)
    print(json.dumps({"answer_bytes": results["answer_bytes"]}), flush=True)

    if not args.batch_only:
        results["single"] = rounds = single_rounds(urls, single, args)
        results["single_ratio"] = single_ratio(rounds)
        print(json.dumps(results["single_ratio"]), flush=True)
    results["batch_1000"] = rounds = batch_rounds(urls, forms, args)
    results["batch_ratio"] = {
        name: [
            round(r["rows_per_s"] / b["rows_per_s"], 3)
            for r, b in zip(got, rounds["bare"], strict=True)
        ]
        for name, got in rounds.items()
        if name != "bare"
    }
    for name, bare in (
        ("raymix-arrow", "bare-arrow"),
        ("raymix-arrow-answer", "bare-arrow"),
        ("raymix-arrow32-answer", "bare-arrow32"),
    ):
        results["batch_ratio"][f"{name} / {bare}"] = [
            round(r["rows_per_s"] / b["rows_per_s"], 3)
            for r, b in zip(rounds[name], rounds[bare], strict=True)
        ]
    print(json.dumps({"batch_ratio": results["batch_ratio"]}), flush=True)
    if args.batch_only:
        finish(results, base, args)
        return

    run_2 = measure_load(two).pop("run")
    expected = {str(one): expected_scores(run_1, rows), str(two): expected_scores(run_2, rows)}
    del run_1, run_2
    results["swap"] = swap_under_load(urls["raymix"], single, expected, two, args)
    print(json.dumps({"swap": results["swap"]}), flush=True)
    after = httpx.get(f"{base}/", timeout=60).json()
    results["replica"]["memory_after_swap_bytes"] = after["replica_memory_bytes"]
    finish(results, base, args)


def single_ratio(rounds: dict) -> dict:
    pairs = list(zip(rounds["raymix"], rounds["bare"], strict=True))
    throughput = [r["requests_per_s"] / b["requests_per_s"] for r, b in pairs]
    p99 = [r["p99_ms"] / b["p99_ms"] for r, b in pairs]
    return {
        "throughput": round(float(np.median(throughput)), 3),
        "p99": round(float(np.median(p99)), 3),
    }


def batch_rounds(urls: dict, forms: dict, args) -> dict:
    """1,000-row requests, the bare deployment and raymix's forms alternated over
    ``--batch-rounds``."""
    out: dict = {name: [] for name in forms}
    for _ in range(args.batch_rounds):
        for name, (key, bodies, content_type, accept) in forms.items():
            r = run_load(
                urls[key],
                bodies,
                count=args.batch_requests,
                concurrency=4,
                max_seconds=180,
                content_type=content_type,
                accept=accept,
            )
            out[name].append(r.summary(rows_per_request=1000))
            print(json.dumps({f"batch_1000/{name}": out[name][-1]}), flush=True)
    return out


def check_forms(url: str, forms: dict, expected: dict[str, np.ndarray]) -> dict:
    """Each of raymix's forms of the first 1,000-row body scores its rows as computed here
    (``expected`` by form); each one's answer size in bytes."""
    import httpx
    import pyarrow as pa

    sizes = {}
    for name, (key, bodies, content_type, accept) in forms.items():
        if key != "raymix":
            continue
        headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
        response = httpx.post(url, content=bodies[0], headers=headers, timeout=60)
        sizes[name] = len(response.content)
        if response.headers["content-type"].startswith(ARROW):
            scores = pa.ipc.open_stream(response.content).read_all().column("scores").to_pylist()
        else:
            answer = response.json()
            scores = answer.get("scores") or [p["score"] for p in answer["predictions"]]
        if not np.allclose(scores, expected[name], rtol=0, atol=1e-9):
            raise SystemExit(f"{name}: the served scores differ from the scores computed here")
    return sizes


def finish(results: dict, base: str, args) -> None:
    from ray import serve as ray_serve

    import raymix.serving

    results["load_average"] = os.getloadavg()
    raymix.serving.shutdown("raymix")
    ray_serve.shutdown()
    print(json.dumps(results, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
