"""Write a run's outputs (models, scores, metrics, summary) and render its report.

A coordinate's score files hold, per row, ``predictionScorePerCoordinate`` (its own logit)
and ``predictionScore``, the cumulative logit of the model made of the coordinates up to and
including it (base offset + their scores): GDMix's semantics, and for the last coordinate
the full model's logit. ``metric/evalSummary.json`` is the validation metric of that
cumulative score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from raymix import metrics as M
from raymix import storage
from raymix.coordinates.random_effect import RandomEffectCoordinate
from raymix.data.avro.photon_layout import PhotonCoordinate, write_photon_layout
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
    from raymix.report_page import entity_sizes

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
                final[coordinate.name]["_per_entity_sizes"] = entity_sizes(
                    state.validation.label, codes
                )
            write_json(base / "metric" / "evalSummary.json", {recipe.metric: value})
    if recipe.model_layout == "photon":
        write_photon_layout(out, photon_coordinates(out, recipe))
    files["_final"] = final
    files["_entities"] = {
        c.name: c.sample_entities() for c in coordinates if isinstance(c, RandomEffectCoordinate)
    }
    task = getattr(recipe.coordinates[-1], "task", None) if recipe.coordinates else None
    if len(state.validation.index) and task == "logistic" and cum_val:
        from raymix.report_page import calibration
        from raymix.solvers.loss import mean, task_code

        probability = mean(task_code(task), cum_val[-1])
        files["_calibration"] = calibration(probability, state.validation.label)
    return files


def photon_coordinates(out, recipe: Recipe) -> list[PhotonCoordinate]:
    """The fixed and random effects of ``recipe`` (their models under ``out``) as Photon ML
    coordinates: the feature bag as the shard, the settings as Photon's model-spec names."""
    found = []
    for c in recipe.coordinates:
        if c.kind not in ("fixed_effect", "random_effect"):
            continue
        bag = c.feature_bag
        shard = ",".join(bag) if isinstance(bag, tuple) else (bag or "intercept")
        settings: dict[str, object] = {"regularizationWeight": c.l2, "regularizationType": "L2"}
        if c.l1:
            settings |= {"regularizationType": "ELASTIC_NET", "l1Weight": c.l1}
        models = storage.join(out, c.name, "models")
        found.append(PhotonCoordinate(c.name, c.kind, models, shard, getattr(c, "entity", None), settings))  # fmt: skip
    return found


def summarize(
    out: Path,
    recipe: Recipe,
    state: DescentState,
    timings: dict,
    files: dict,
    fixed_effect_variances: dict | None = None,
) -> FitResult:
    """Write ``summary.json`` and the report; ``fixed_effect_variances``: which variances the
    fixed effect's model holds (:func:`raymix.coordinates.marginal_variance.use_marginal_variances`)."""
    from raymix.report_page import recipe_text, render_html

    final = files.pop("_final", {})
    curve = files.pop("_calibration", None)
    entities = files.pop("_entities", {})
    per_entity = {
        name: v.pop("_per_entity_values") for name, v in final.items() if "_per_entity_values" in v
    }
    sizes = {
        name: v.pop("_per_entity_sizes") for name, v in final.items() if "_per_entity_sizes" in v
    }
    steps = [
        {
            "pass": s.pass_index + 1,
            "coordinate": s.coordinate,
            "metrics": s.metrics,
            "seconds": round(s.seconds, 4),
            **{
                k: v
                for k, v in s.info.items()
                if isinstance(v, int | float | bool | str | list | dict)
            },
        }
        for s in state.steps
    ]
    timings = {k: round(v, 4) for k, v in timings.items()}
    timings["coordinates"] = round(sum(s.seconds for s in state.steps), 4)
    components = variance_components(steps)
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
    if components:  # lme4's VarCorr of the random effects with l2="auto"
        summary["variance_components"] = components
    if method := variance_method(steps):
        summary["variance_method"] = method
    if fixed_effect_variances is not None:
        summary["fixed_effect_variances"] = fixed_effect_variances
    write_json(out / "summary.json", summary)
    page = render_html(
        summary,
        per_entity,
        calibration_curve=curve,
        coefficients=largest_coefficients(out, recipe),
        recipe_json=recipe_text(recipe),
        sizes=sizes,
        entities=entities,
        written_pass=(
            state.best_pass + 1
            if recipe.early_stopping is not None
            else max((s.pass_index + 1 for s in state.steps), default=1)
        ),
    )
    write_text(out / "report.html", page)
    return FitResult(
        output=out,
        steps=steps,
        final=final,
        timings=timings,
        best_pass=state.best_pass + 1,
        files=files,
    )


def variance_components(steps: list[dict]) -> dict[str, dict[str, float]]:
    """lme4's ``VarCorr``: per random effect with ``l2="auto"``, the variance of its
    coefficients (``sigma^2``; ``1 / l2`` for a task without a residual variance) and its
    standard deviation, from its last step (with ``l2_per_feature`` one per slot, named
    ``"<coordinate> (Intercept)"``, ``"<coordinate> <feature>"``); ``"residual"``: ``sigma_e^2`` of a linear
    model, from the last step that estimated it."""
    components: dict[str, dict[str, float]] = {}
    residual = None
    for s in steps:
        if "l2" not in s:
            continue
        by_feature = s.get("sigma2_by_feature")
        if by_feature:  # l2_per_feature: one per slot, as lme4's (1 + x || g) lists them
            for term, variance in by_feature.items():
                components[f"{s['coordinate']} {term}"] = {"variance": variance, "std_dev": float(np.sqrt(variance))}  # fmt: skip
        else:
            variance = s.get("sigma2", 1.0 / s["l2"] if s["l2"] else float("inf"))
            components[s["coordinate"]] = {"variance": variance, "std_dev": float(np.sqrt(variance))}  # fmt: skip
        residual = s.get("sigma_e2", residual)
    if residual is not None:
        components["residual"] = {"variance": residual, "std_dev": float(np.sqrt(residual))}
    return components


def variance_method(steps: list[dict]) -> str | None:
    """How a linear model's variance components were estimated ("ml" or "reml"; None
    without a residual variance)."""
    return next((s["variance_method"] for s in reversed(steps) if "variance_method" in s), None)


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
    components = variance_components(result.steps)
    if components:
        method = variance_method(result.steps)
        title = "variance components (l2=auto" + (f", {method.upper()})" if method else ")")
        lines.append(f"{title:<30} {'variance':>10} {'std.dev':>10}")
        for name, c in components.items():
            lines.append(f"  {name:<28} {c['variance']:10.4g} {c['std_dev']:10.4g}")
    lines.append("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    return "\n".join(lines)


def largest_coefficients(out, recipe: Recipe, top: int = 15) -> dict[str, list[dict]]:
    """Each fixed effect's ``top`` coefficients by magnitude (the intercept apart, first),
    with their variances (NaN when the fit computed none), from its written models."""
    from raymix.data.avro.models import read_models
    from raymix.recipe.spec import FixedEffect

    tables = {}
    for spec in recipe.coordinates:
        if not isinstance(spec, FixedEffect):
            continue
        rows = []
        for record in read_models(out / spec.name / "models"):
            variances = {(v["name"], v["term"]): v["value"] for v in record["variances"] or ()}
            for m in record["means"]:
                rows.append(
                    {
                        "name": m["name"],
                        "term": m["term"],
                        "value": m["value"],
                        "variance": variances.get((m["name"], m["term"]), float("nan")),
                    }
                )
        intercept = [r for r in rows if r["name"] == "(INTERCEPT)"]
        rest = sorted(
            (r for r in rows if r["name"] != "(INTERCEPT)"), key=lambda r: -abs(r["value"])
        )
        tables[spec.name] = intercept + rest[:top]
    return tables
