"""What a synthetic data set says of itself: the validation AUC of the model it was drawn from.

:func:`raymix.datasets.synthetic.generate_synthetic` writes ``summary.json`` beside its
``train``/``validation`` directories; ``raymix fit`` prints the planted model's AUC beside the
fit's when the recipe's validation data is such a directory, to show how close the fit came.
"""

from __future__ import annotations

import json
from pathlib import Path


def planted_auc(validation) -> float | None:
    """The planted model's validation AUC, if ``validation`` (a recipe's ``data.validation``)
    is the validation directory of a synthetic data set; else None."""
    if not isinstance(validation, str):
        return None
    summary = Path(validation).parent / "summary.json"
    try:
        found = json.loads(summary.read_text())
    except (OSError, ValueError):
        return None
    auc = found.get("validation_true_auc") if isinstance(found, dict) else None
    return float(auc) if isinstance(auc, int | float) else None
