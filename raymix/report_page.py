"""``report.html``: one self-contained page a person opens after a fit.

What it holds: the metric of every coordinate per pass (a line chart and a table whose every
column is named), what "final" means, the per-entity AUC distribution of each random effect,
a calibration curve (logistic), the largest fixed-effect coefficients (with their variances
when the fit computed them), the timings as a chart, and the recipe. Figures are drawn with
matplotlib (Agg) and embedded as PNG ``data:`` URIs, so the page needs no other file; without
matplotlib the tables remain and the page says the figures were skipped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence

import numpy as np

METHODS = {  # a linear model's variance_method, as the note says it
    "ml": "maximum likelihood, as lmer(REML = FALSE)",
    "reml": "restricted maximum likelihood, as lmer(REML = TRUE)",
}
FINAL_MEANING = (
    "The final metrics (summary.json's final, each coordinate's metric/evalSummary.json) are "
    "those of the models written to the output: the last pass, or with early stopping the "
    "best pass: pass {written} here. Each coordinate's value is the validation metric of the "
    "cumulative model: that coordinate and every one before it in the recipe's order. The "
    "table below is the metric during the descent, after every coordinate update: of the "
    "whole model at that moment (later coordinates still at their previous pass), so only "
    "the last coordinate's final value equals its last row there."
)


def calibration(probability: np.ndarray, label: np.ndarray, bins: int = 10) -> dict:
    """Mean predicted probability, observed positive rate and row count per equal-width bin
    of the predicted probability (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    keep = counts > 0
    predicted = np.bincount(which, probability, bins)[keep] / counts[keep]
    observed = np.bincount(which, label.astype(float), bins)[keep] / counts[keep]
    return {
        "predicted": predicted.tolist(),
        "observed": observed.tolist(),
        "rows": counts[keep].tolist(),
    }


def entity_sizes(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Validation rows of every entity that has both classes, in the order of
    :func:`raymix.metrics.per_entity_auc`'s values (ascending entity code)."""
    keep = codes >= 0
    codes, positive = codes[keep], np.asarray(labels)[keep] > 0.5
    if codes.size == 0:
        return np.zeros(0, np.int64)
    rows = np.bincount(codes)
    positives = np.bincount(codes, weights=positive).astype(np.int64)
    both = (positives > 0) & (rows - positives > 0)
    return rows[both]


def metric_columns(steps: Sequence[dict]) -> list[str]:
    """Every metric name of the steps, in the order they first appear."""
    return list(dict.fromkeys(name for s in steps for name in s["metrics"]))


def render_html(
    summary: dict,
    per_entity: dict[str, np.ndarray],
    *,
    calibration_curve: dict | None = None,
    coefficients: dict[str, list[dict]] | None = None,
    recipe_json: str = "",
    written_pass: int | None = None,
    sizes: dict[str, np.ndarray] | None = None,
    entities: dict | None = None,
) -> str:
    """The page; ``coefficients`` maps a fixed effect to its rows (name, term, value,
    variance), the largest by magnitude first; ``written_pass`` the pass whose models were
    written (default: the best pass); ``sizes`` each random effect's validation rows per
    entity, aligned with ``per_entity`` (a scatter of AUC against size); ``entities`` each random
    effect's :class:`~raymix.coordinates.entity_sample.EntitySample`."""
    figures = _Figures()
    steps = summary["steps"]
    names = metric_columns(steps)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["pass", "coordinate", *names, "seconds"])
    body = "".join(
        "<tr>"
        + f"<td>{s['pass']}</td><td>{html.escape(s['coordinate'])}</td>"
        + "".join(_cell(s["metrics"].get(n)) for n in names)
        + f"<td>{s['seconds']:.2f}</td></tr>"
        for s in steps
    )
    final = summary["final"]
    final_names = list(dict.fromkeys(n for v in final.values() for n in v))
    final_rows = "".join(
        f"<tr><td>{html.escape(c)}</td>" + "".join(_cell(v.get(n)) for n in final_names) + "</tr>"
        for c, v in final.items()
    )
    parts = [
        f"<h1>raymix run: {html.escape(summary['recipe'])}</h1>",
        f"<p>{summary['rows']['train']:,} training rows, {summary['rows']['validation']:,} "
        f"validation rows; metric {html.escape(summary['metric'])}; best pass "
        f"{summary['best_pass']}.</p>",
        "<h2>Final metrics</h2>",
        f"<p class=note>{html.escape(FINAL_MEANING.format(written=written_pass or summary['best_pass']))}</p>",
        "<table><tr><th>coordinate</th>"
        + "".join(f"<th>{html.escape(n)}</th>" for n in final_names)
        + f"</tr>{final_rows}</table>",
        "<h2>Validation metric per coordinate and pass</h2>",
        figures.metric_lines(steps, summary["metric"]),
        f"<table><tr>{head}</tr>{body}</table>",
        "<h2>Per-entity AUC</h2>",
        "".join(
            figures.histogram(n, v) + figures.against_size(n, v, (sizes or {}).get(n))
            for n, v in per_entity.items()
            if v.size
        )
        or "<p>no random effect with validation data and an AUC metric</p>",
    ]
    estimated = [s for s in steps if "l2" in s]
    if estimated:
        parts += [
            '<h2>Variance components (l2 = "auto")</h2>',
            "<p class=note>Each random effect's prior precision, estimated by EM at every fit; "
            "the prior variance of its coefficients is 1 / l2, and for a linear task "
            "sigma^2 = sigma_e^2 / l2 with the residual variance sigma_e^2 estimated beside it "
            f"({METHODS.get(summary.get('variance_method', 'ml'), '')}).</p>",
            "<table><tr><th>pass</th><th>coordinate</th><th>l2</th><th>prior variance</th>"
            "<th>EM iterations</th><th>residual variance</th></tr>"
            + "".join(
                f"<tr><td>{s['pass']}</td><td>{html.escape(s['coordinate'])}</td>"
                f"{_cell(float(s['l2']))}"
                f"{_cell(s.get('sigma2', 1.0 / float(s['l2']) if s['l2'] else None))}"
                f"{_cell(s.get('em_iterations'))}{_cell(s.get('sigma_e2'))}</tr>"
                for s in estimated
            )
            + "</table>",
        ]
    if entities:
        parts += [
            "<h2>Random-effect coefficients and shrinkage</h2>",
            "<p class=note>The penalty pulls an entity's coefficients towards zero (the other "
            "coordinates' prediction) the harder the fewer rows it has: small entities sit near "
            "0, large ones spread out. The intercept shrinks too only where the recipe says "
            "<code>regularize_intercept</code>: unpenalized, the intercept of a small entity "
            "whose rows all have one label runs off to a large value.</p>",
            *(figures.random_effect(n, sample) for n, sample in entities.items()),
        ]
    if calibration_curve is not None:
        parts += ["<h2>Calibration (the full model, validation)</h2>"]
        parts += [figures.calibration(calibration_curve)]
    for name, rows in (coefficients or {}).items():
        parts += [f"<h2>Largest coefficients of {html.escape(name)}</h2>"]
        parts += [figures.coefficients(name, rows), _coefficient_table(rows)]
    timings = summary["timings_seconds"]
    parts += ["<h2>Timings</h2>", figures.timings(timings)]
    parts += [
        "<table><tr><th>phase</th><th>seconds</th></tr>"
        + "".join(f"<tr><td>{html.escape(k)}</td>{_cell(v)}</tr>" for k, v in timings.items())
        + "</table>"
    ]
    if figures.skipped:
        parts.insert(1, f"<p class=note>figures skipped: {html.escape(figures.skipped)}</p>")
    if recipe_json:
        parts += ["<h2>Recipe (run.json)</h2>", f"<pre>{html.escape(recipe_json)}</pre>"]
    title = html.escape(summary["recipe"])
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>raymix: {title}</title>'
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
        "td,th{padding:2px 10px;text-align:right}th{border-bottom:1px solid #888}"
        ".note{color:#444}img{max-width:100%}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _cell(value) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        return f"<td>{value:.4f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _coefficient_table(rows: list[dict]) -> str:
    has_variance = any(np.isfinite(r["variance"]) for r in rows)
    head = "<tr><th>name</th><th>term</th><th>value</th>"
    head += "<th>variance</th></tr>" if has_variance else "</tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(r['term'])}</td>{_cell(r['value'])}"
        + (_cell(r["variance"]) if has_variance else "")
        + "</tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


class _Figures:
    """matplotlib figures as ``<img>`` tags; ``skipped`` says why there are none."""

    def __init__(self):
        self.skipped = ""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            self.plt = plt
        except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
            self.plt = None
            self.skipped = f"matplotlib is not installed ({exc})"

    def _img(self, fig, alt: str) -> str:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=90)
        self.plt.close(fig)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    def metric_lines(self, steps: Sequence[dict], metric: str) -> str:
        if self.plt is None or not steps:
            return ""
        fig, ax = self.plt.subplots(figsize=(7, 3.5))
        for name in dict.fromkeys(s["coordinate"] for s in steps):
            mine = [s for s in steps if s["coordinate"] == name and metric in s["metrics"]]
            ax.plot(
                [s["pass"] for s in mine], [s["metrics"][metric] for s in mine], "o-", label=name
            )
        ax.set_xlabel("pass")
        ax.set_ylabel(f"validation {metric} (cumulative model)")
        ax.set_xticks(sorted({s["pass"] for s in steps}))
        ax.legend(title="after coordinate")
        ax.grid(alpha=0.3)
        return self._img(fig, f"validation {metric} per pass")

    def histogram(self, name: str, values: np.ndarray) -> str:
        head = f"<h3>{html.escape(name)}: {values.size:,} entities, mean {values.mean():.4f}</h3>"
        if self.plt is None:
            return head
        fig, ax = self.plt.subplots(figsize=(6, 3))
        ax.hist(values, bins=20, range=(0.0, 1.0), color="#4a7")
        ax.set_xlabel(f"per-entity validation AUC ({name})")
        ax.set_ylabel("entities")
        return head + self._img(fig, f"per-entity AUC of {name}")

    def against_size(self, name: str, values: np.ndarray, sizes) -> str:
        if self.plt is None or sizes is None or len(sizes) != len(values):
            return ""
        fig, ax = self.plt.subplots(figsize=(6, 3))
        ax.scatter(sizes, values, s=6, alpha=0.4, color="#4a7")
        ax.set_xscale("log")
        ax.set_xlabel(f"validation rows of the entity ({name}, log scale)")
        ax.set_ylabel("per-entity AUC")
        return self._img(fig, f"per-entity AUC against entity size of {name}")

    def random_effect(self, name: str, sample) -> str:
        """The distribution of a random effect's coefficients (intercepts, other
        coefficients) and their shrinkage: each against its entity's training rows."""
        head = (
            f"<h3>{html.escape(name)}: {sample.entities:,} entities fitted"
            + (f", {sample.n:,} sampled" if sample.n < sample.entities else "")
            + "</h3>"
        )
        if self.plt is None or sample.n == 0:
            return head
        fig, axes = self.plt.subplots(1, 3, figsize=(11, 3.2))
        axes[0].hist(sample.intercept, bins=40, color="#47a")
        axes[0].set_xlabel("intercept")
        axes[0].set_ylabel("entities")
        axes[1].hist(sample.slopes, bins=40, color="#a74")
        axes[1].set_xlabel("other coefficients")
        axes[1].set_ylabel("coefficients")
        axes[2].scatter(sample.rows, np.abs(sample.intercept), s=5, alpha=0.4, label="|intercept|")
        if sample.slopes.size:
            axes[2].scatter(
                sample.rows, sample.slope_norm, s=5, alpha=0.4, label="norm of the others"
            )
        axes[2].set_xscale("log")
        axes[2].set_xlabel("training rows of the entity (log scale)")
        axes[2].set_ylabel("size of the model")
        axes[2].legend()
        return head + self._img(fig, f"coefficients and shrinkage of {name}")

    def calibration(self, curve: dict) -> str:
        if self.plt is None:
            return ""
        fig, ax = self.plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], ":", color="#888", label="perfectly calibrated")
        ax.plot(curve["predicted"], curve["observed"], "o-", label="model")
        ax.set_xlabel("mean predicted probability (bin)")
        ax.set_ylabel("observed positive rate")
        ax.legend()
        return self._img(fig, "calibration curve")

    def coefficients(self, name: str, rows: list[dict]) -> str:
        if self.plt is None or not rows:
            return ""
        fig, ax = self.plt.subplots(figsize=(7, 0.3 * len(rows) + 1))
        labels = [r["name"] + (f" {r['term']}" if r["term"] else "") for r in rows][::-1]
        ax.barh(labels, [r["value"] for r in rows][::-1], color="#47a")
        ax.set_xlabel(f"coefficient ({name})")
        ax.set_ylabel("feature")
        return self._img(fig, f"largest coefficients of {name}")

    def timings(self, timings: dict) -> str:
        if self.plt is None or not timings:
            return ""
        fig, ax = self.plt.subplots(figsize=(7, 0.3 * len(timings) + 1))
        ax.barh(list(timings)[::-1], list(timings.values())[::-1], color="#a74")
        ax.set_xlabel("seconds")
        ax.set_ylabel("phase")
        return self._img(fig, "timings")


def recipe_text(recipe) -> str:
    """The resolved recipe as the page shows it (the JSON of ``run.json``)."""
    return json.dumps(json.loads(recipe.model_dump_json()), indent=2)
