"""The run's summary pieces: lme4-style variance components and the terminal table."""

import math

from raymix.report import table, variance_components
from raymix.result import FitResult


def steps():
    return [
        {"pass": 1, "coordinate": "global", "metrics": {"rmse": 0.9}, "seconds": 0.1},
        {"pass": 1, "coordinate": "per-user", "metrics": {"rmse": 0.8}, "seconds": 0.1,
         "l2": 4.0, "sigma2": 0.5, "sigma_e2": 2.0},
        {"pass": 1, "coordinate": "per-item", "metrics": {"rmse": 0.7}, "seconds": 0.1, "l2": 8.0},
        {"pass": 2, "coordinate": "per-user", "metrics": {"rmse": 0.6}, "seconds": 0.1,
         "l2": 2.0, "sigma2": 0.9, "sigma_e2": 1.8},
    ]  # fmt: skip


def test_variance_components_are_the_last_estimates():
    components = variance_components(steps())
    assert list(components) == ["per-user", "per-item", "residual"]
    assert components["per-user"] == {"variance": 0.9, "std_dev": math.sqrt(0.9)}
    assert components["per-item"]["variance"] == 1 / 8.0  # no sigma2: 1 / l2
    assert components["residual"] == {"variance": 1.8, "std_dev": math.sqrt(1.8)}
    assert variance_components(steps()[:1]) == {}


def test_the_table_shows_the_components():
    result = FitResult(
        output=None, steps=steps(), final={}, timings={"fit": 1.0}, best_pass=2, files={}
    )
    text = table(result)
    assert "variance components" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("residual"))
    assert line.split()[1:] == [f"{1.8:.4g}", f"{math.sqrt(1.8):.4g}"]
    plain = FitResult(output=None, steps=steps()[:1], final={}, timings={}, best_pass=1, files={})
    assert "variance components" not in table(plain)


def test_per_feature_components_are_listed_per_slot():
    step = {"pass": 1, "coordinate": "per-user", "metrics": {"rmse": 0.6}, "seconds": 0.1,
            "l2": 2.0, "sigma2": 0.9, "sigma_e2": 1.8,
            "sigma2_by_feature": {"(Intercept)": 0.9, "age": 0.04}}  # fmt: skip
    components = variance_components([step])
    assert list(components) == ["per-user (Intercept)", "per-user age", "residual"]
    assert components["per-user age"] == {"variance": 0.04, "std_dev": 0.2}
