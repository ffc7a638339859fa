"""Where a 1,000-row ``POST /predict`` spends its time inside the replica, without HTTP or Ray.

The run bench/serve.py serves (``--work``: 1M user and 100k item models), one 1,000-row body
of bench/serve.py's generator in each form (rows, JSON columns, an Arrow IPC stream); each
step of the replica's request path timed alone, min and median of ``--repeat``:

    python bench/serve_handler.py [--work /tmp/raymix-bench-serve] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from serve import ARROW, arrow_stream, request_columns, request_rows  # noqa: E402


def timed(name: str, f, repeat: int, out: dict):
    seconds = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = f()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    out[name] = {
        "min_ms": round(seconds[0] * 1e3, 2),
        "median_ms": round(seconds[repeat // 2] * 1e3, 2),
    }
    print(json.dumps({name: out[name]}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/raymix-bench-serve"))
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from raymix.serving.columnar import parse_request, read_columns
    from raymix.serving.model import load_run
    from raymix.serving.requests import parse_body, parse_rows, predictions
    from raymix.serving.responses import JSON, Answer
    from raymix.serving.responses import body as answer_body

    def answered(b, s) -> Answer:
        return Answer(run.name, run.output, b, s, 0, b.n, columnar=True)

    run = load_run(args.work / "run-1")
    given = request_rows(1000, 1_000_000, 100_000, seed=4)
    body = json.dumps({"rows": given}).encode()
    columns = json.dumps({"columns": request_columns(given)}).encode()
    arrow = arrow_stream(request_columns(given))
    out: dict = {"body_bytes": {"rows": len(body), "columns": len(columns), "arrow": len(arrow)}}
    print(json.dumps(out), flush=True)
    k = args.repeat
    rows = timed("json parse (orjson)", lambda: parse_body(body), k, out)
    batch = timed("columns: rows -> arrays", lambda: parse_rows(rows, run.layout), k, out)
    for c in run.coordinates:
        X = batch.bags[c.bag]
        ids = batch.entities[c.entity] if c.entity else None
        timed(f"score {c.name}", lambda c=c, X=X, ids=ids: c.scores(X, ids, None), k, out)
        if c.linear is not None and ids is not None:
            timed(
                f"  of which id lookup {c.name}", lambda c=c, ids=ids: c.linear.rows_of(ids), k, out
            )
    scored = timed("score (all coordinates)", lambda: run.score(batch), k, out)
    answer = timed("response dicts", lambda: predictions(run.name, batch, scored), k, out)
    timed("response JSON (orjson)", lambda: orjson.dumps(answer), k, out)

    def whole():
        b = parse_rows(parse_body(body), run.layout)
        return orjson.dumps(predictions(run.name, b, run.score(b)))

    timed("whole request path", whole, k, out)

    for form, data, content_type in (
        ("JSON columns", columns, "application/json"),
        ("Arrow", arrow, ARROW),
    ):
        parsed = timed(f"{form}: parse", lambda d=data, c=content_type: parse_request(d, c), k, out)
        b = timed(
            f"{form}: columns -> arrays", lambda p=parsed: read_columns(p, run.layout), k, out
        )
        scored = run.score(b)
        for answer in (JSON, ARROW):
            timed(
                f"{form}: response ({answer})",
                lambda b=b, s=scored, a=answer: answer_body(answered(b, s), a),
                k,
                out,
            )

        def whole_columnar(d=data, c=content_type, a=JSON):
            b = read_columns(parse_request(d, c), run.layout)
            return answer_body(answered(b, run.score(b)), a)

        timed(f"{form}: whole request path", whole_columnar, k, out)
        if content_type == ARROW:
            arrow_answer = lambda d=data, c=content_type: whole_columnar(d, c, ARROW)  # noqa: E731
            timed(f"{form}: whole request path, Arrow answer", arrow_answer, k, out)


if __name__ == "__main__":
    main()
