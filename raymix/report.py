"""Write a run's outputs (models, scores, metrics, summary) and render its report.

A coordinate's score files hold, per row, ``predictionScorePerCoordinate`` (its own logit)
and ``predictionScore``, the cumulative logit of the model made of the coordinates up to and
including it (base offset + their scores): GDMix's semantics, and for the last coordinate
the full model's logit. ``metric/evalSummary.json`` is the validation metric of that
cumulative score.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from raymix import metrics as M
from raymix.data.avro.scores import write_scores_avro
from raymix.descent import DescentState
from raymix.recipe.spec import Recipe
from raymix.result import FitResult
from raymix.storage import write_json, write_text


def cumulative(state_split, names: list[str]) -> list[np.ndarray]:
    """Cumulative score after each coordinate, in recipe order."""
    running = state_split.base.copy()
    out = []
    for name in names:
        running = running + state_split.scores[name]
        out.append(running.copy())
    return out


def write_outputs(out: Path, recipe: Recipe, coordinates, state: DescentState) -> dict:
    names = [c.name for c in coordinates]
    files: dict = {}
    cum_train = cumulative(state.train, names)
    cum_val = cumulative(state.validation, names)
    columns = recipe.columns
    score_names = ("uid", columns.label, columns.weight or "weight")
    final: dict[str, dict[str, Any]] = {}
    for k, coordinate in enumerate(coordinates):
        base = out / coordinate.name
        files[coordinate.name] = {
            "models": [str(p) for p in coordinate.write_models(base / "models")]
        }
        for split, cum, which in (
            (state.train, cum_train[k], "training_scores"),
            (state.validation, cum_val[k], "validation_scores"),
        ):
            if len(split.index) == 0:
                continue
            path = write_scores_avro(
                base / which / "part-00000.avro",
                split.index.uid,
                cum,
                split.scores[coordinate.name],
                split.label,
                split.weight,
                names=score_names,
            )
            files[coordinate.name][which] = str(path)
        if len(state.validation.index):
            value = M.evaluate(
                recipe.metric, cum_val[k], state.validation.label, state.validation.weight
            )
            final[coordinate.name] = {recipe.metric: value}
            codes = state.validation.entity_codes.get(coordinate.name)
            if codes is not None and recipe.metric == "auc":
                per_entity = M.per_entity_auc(cum_val[k], state.validation.label, codes)
                final[coordinate.name]["per_entity_auc"] = (
                    M.exact_mean(per_entity) if per_entity.size else None
                )
                final[coordinate.name]["_per_entity_values"] = per_entity
            write_json(base / "metric" / "evalSummary.json", {recipe.metric: value})
    files["_final"] = final
    return files


def summarize(
    out: Path, recipe: Recipe, state: DescentState, timings: dict, files: dict
) -> FitResult:
    final = files.pop("_final", {})
    per_entity = {
        name: v.pop("_per_entity_values") for name, v in final.items() if "_per_entity_values" in v
    }
    steps = [
        {
            "pass": s.pass_index + 1,
            "coordinate": s.coordinate,
            "metrics": s.metrics,
            "seconds": round(s.seconds, 4),
            **{k: v for k, v in s.info.items() if isinstance(v, int | float | bool | str | list)},
        }
        for s in state.steps
    ]
    timings = {k: round(v, 4) for k, v in timings.items()}
    timings["coordinates"] = round(sum(s.seconds for s in state.steps), 4)
    summary = {
        "recipe": recipe.name,
        "rows": {"train": len(state.train.index), "validation": len(state.validation.index)},
        "metric": recipe.metric,
        "final": final,
        "best_pass": state.best_pass + 1,
        "steps": steps,
        "timings_seconds": timings,
        "files": files,
    }
    write_json(out / "summary.json", summary)
    write_text(out / "report.html", render_html(summary, per_entity))
    return FitResult(
        output=out,
        steps=steps,
        final=final,
        timings=timings,
        best_pass=state.best_pass + 1,
        files=files,
    )


def table(result) -> str:
    """The terminal table: metric of the cumulative model after each coordinate and pass."""
    header = f"{'pass':>4}  {'coordinate':<20} {'auc/metric':>10} {'per-entity':>10} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for s in result.steps:
        metrics = s["metrics"]
        main = next((v for k, v in metrics.items() if k in M.METRICS), float("nan"))
        pe = metrics.get("per_entity_auc")
        pe_text = f"{pe:10.4f}" if pe is not None else f"{'':>10}"
        lines.append(
            f"{s['pass']:>4}  {s['coordinate']:<20} {main:10.4f} {pe_text} {s['seconds']:8.2f}"
        )
    lines.append("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    return "\n".join(lines)


def render_html(summary: dict, per_entity: dict[str, np.ndarray]) -> str:
    rows = "".join(
        f"<tr><td>{s['pass']}</td><td>{html.escape(s['coordinate'])}</td>"
        + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>"
            for v in s["metrics"].values()
        )
        + f"<td>{s['seconds']:.2f}</td></tr>"
        for s in summary["steps"]
    )
    charts = "".join(_histogram_svg(name, values) for name, values in per_entity.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>raymix: {html.escape(summary["recipe"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}</style></head><body>
<h1>raymix run: {html.escape(summary["recipe"])}</h1>
<p>{summary["rows"]["train"]} training rows, {summary["rows"]["validation"]} validation rows; best pass {summary["best_pass"]}.</p>
<h2>Validation metrics of the cumulative model, per coordinate and pass</h2>
<table><tr><th>pass</th><th>coordinate</th><th colspan="4">metrics</th><th>seconds</th></tr>{rows}</table>
<h2>Per-entity AUC distribution</h2>{charts or "<p>no random effect with validation data</p>"}
<h2>Timings (s)</h2><pre>{html.escape(json.dumps(summary["timings_seconds"], indent=1))}</pre>
</body></html>
"""


def _histogram_svg(name: str, values: np.ndarray, bins: int = 20) -> str:
    if values.size == 0:
        return ""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    width, height = 400, 150
    bar = width / bins
    top = max(int(counts.max()), 1)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * height:.1f}" fill="#4a7"/>'
        for i, c in enumerate(counts)
    )
    return (
        f"<h3>{html.escape(name)}: {values.size} entities, mean {values.mean():.4f}</h3>"
        f'<svg width="{width}" height="{height + 20}">{bars}'
        f'<text x="0" y="{height + 15}">0</text><text x="{width - 10}" y="{height + 15}">1</text></svg>'
    )
