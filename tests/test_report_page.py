"""report.html without a fit: every part the page promises is there, every table column is
named, the figures are embedded; headless Chromium renders it (a screenshot with content)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np

from raymix.coordinates.entity_sample import EntitySample
from raymix.metrics import per_entity_auc
from raymix.report_page import calibration, entity_sizes, metric_columns, render_html

STEPS = [
    {"pass": p, "coordinate": c, "metrics": m, "seconds": 0.25}
    for p in (1, 2)
    for c, m in (
        ("global", {"auc": 0.62 + p / 100}),
        ("per-user", {"auc": 0.70 + p / 100, "per_entity_auc": 0.59}),
    )
]
SUMMARY = {
    "recipe": "demo <x>",
    "rows": {"train": 8000, "validation": 2000},
    "metric": "auc",
    "final": {"global": {"auc": 0.64}, "per-user": {"auc": 0.72, "per_entity_auc": 0.59}},
    "best_pass": 2,
    "steps": STEPS,
    "timings_seconds": {"validate": 0.1, "ray_start": 3.0, "read": 1.2, "coordinates": 1.0},
}
COEFFICIENTS = {
    "global": [
        {"name": "(INTERCEPT)", "term": "", "value": -0.3, "variance": 0.01},
        {"name": "age", "term": "", "value": 0.8, "variance": 0.002},
        {"name": "genre", "term": "Drama", "value": -0.5, "variance": 0.004},
    ]
}


_rows = np.random.default_rng(2).integers(1, 300, 60)
SAMPLE = EntitySample(
    rows=_rows,
    intercept=np.random.default_rng(3).normal(size=60) * _rows / (_rows + 20.0),
    slope_norm=np.abs(np.random.default_rng(4).normal(size=60)),
    slopes=np.random.default_rng(5).normal(size=180),
    entities=900,
)


def page() -> str:
    rng = np.random.default_rng(0)
    probability = rng.uniform(size=500)
    return render_html(
        SUMMARY,
        {"per-user": rng.uniform(0.3, 0.9, 40)},
        calibration_curve=calibration(probability, rng.uniform(size=500) < probability),
        coefficients=COEFFICIENTS,
        recipe_json='{"name": "demo"}',
        entities={"per-user": SAMPLE},
    )


def test_calibration_bins_mean_prediction_and_observed_rate():
    curve = calibration(np.array([0.05, 0.15, 0.12, 0.95]), np.array([0, 1, 0, 1]), bins=10)
    assert curve["rows"] == [1, 2, 1]
    np.testing.assert_allclose(curve["predicted"], [0.05, 0.135, 0.95])
    np.testing.assert_allclose(curve["observed"], [0.0, 0.5, 1.0])


def test_every_table_column_is_named_and_seconds_sit_under_seconds():
    text = page()
    assert metric_columns(STEPS) == ["auc", "per_entity_auc"]
    header = "<tr><th>pass</th><th>coordinate</th><th>auc</th><th>per_entity_auc</th><th>seconds</th></tr>"
    assert header in text
    # the fixed effect has no per-entity AUC: an empty cell, so 0.25 stays under "seconds"
    assert "<tr><td>1</td><td>global</td><td>0.6300</td><td></td><td>0.25</td></tr>" in text
    assert "colspan" not in text


def test_the_page_holds_what_the_issue_lists():
    text = page()
    for heading in (
        "Final metrics",
        "Validation metric per coordinate and pass",
        "Per-entity AUC",
        "Calibration",
        "Largest coefficients of global",
        "Random-effect coefficients and shrinkage",
        "Timings",
        "Recipe (run.json)",
    ):
        assert f"{heading}" in text, heading
    assert "best pass: pass 2 here" in text  # what "final" means, said once
    assert "per-user: 900 entities fitted, 60 sampled" in text
    assert 'alt="coefficients and shrinkage of per-user"' in text
    assert "<th>variance</th>" in text and "<td>Drama</td>" in text
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', text)) == 6
    assert "demo &lt;x&gt;" in text and "figures skipped" not in text


def test_headless_chromium_renders_the_page(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, "Debian's chromium is needed (.ci/run installs it with apt)"
    from PIL import Image

    (tmp_path / "report.html").write_text(page())
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--screenshot={shot}", "--window-size=1000,2400",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), done.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (2400, 1000)
    # not a blank page: dark text, and the charts' colours (the bars' green #4a7, blue lines)
    assert (image.sum(axis=2) < 200).mean() > 0.002
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert len(colours) > 50
    green = np.all(np.abs(image.astype(int) - (0x44, 0xAA, 0x77)) < 12, axis=2)
    assert green.sum() > 500  # the per-entity AUC histogram's bars


def test_entity_sizes_line_up_with_the_per_entity_aucs():
    rng = np.random.default_rng(1)
    codes = rng.integers(-1, 30, 2000)
    codes[codes == 7] = 8  # an entity code with no rows
    labels = (rng.uniform(size=2000) < 0.3).astype(float)
    labels[codes == 3] = 1.0  # one class only: no AUC
    sizes = entity_sizes(labels, codes)
    aucs = per_entity_auc(rng.normal(size=2000), labels, codes)
    assert sizes.shape == aucs.shape
    expected = [np.sum(codes == c) for c in range(30) if c not in (3, 7)]
    np.testing.assert_array_equal(sizes, expected)


def test_auto_l2_and_entity_sizes_add_their_parts():
    steps = [
        {**s, "l2": 4.0, "em_iterations": 3} if s["coordinate"] == "per-user" else s for s in STEPS
    ]
    values = np.linspace(0.4, 0.9, 40)
    text = render_html(
        {**SUMMARY, "steps": steps}, {"per-user": values}, sizes={"per-user": np.arange(1, 41)}
    )
    assert 'Variance components (l2 = "auto")' in text
    assert "<td>4.0000</td><td>0.2500</td><td>3</td>" in text
    assert 'alt="per-entity AUC against entity size of per-user"' in text
