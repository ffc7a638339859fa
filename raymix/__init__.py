"""raymix: generalized deep mixed models (GLMix / GAME) trained elastically on Ray.

A recipe imports what it needs from here::

    from raymix import Data, FixedEffect, RandomEffect, Recipe

and Python code fits, loads and applies models (:mod:`raymix.api`)::

    model = raymix.fit(recipe)          # or raymix.load("out/...")
    scores = model.predict(frame)       # a DataFrame, a pyarrow Table, a ray.data.Dataset, files
"""

from typing import TYPE_CHECKING

from raymix.errors import DataError, FitError, RaymixError, RecipeError
from raymix.recipe.optimizers import SGD, Adam, AdamW
from raymix.recipe.spec import (
    LBFGS,
    Columns,
    Data,
    DeepEffect,
    EarlyStopping,
    ExternalEffect,
    FixedEffect,
    Newton,
    RandomEffect,
    Recipe,
    Resources,
)

__all__ = [
    "LBFGS",
    "SGD",
    "Adam",
    "AdamW",
    "Columns",
    "Data",
    "DataError",
    "DeepEffect",
    "EarlyStopping",
    "ExternalEffect",
    "FitError",
    "FixedEffect",
    "Model",
    "Newton",
    "RaymixError",
    "RandomEffect",
    "Recipe",
    "RecipeError",
    "Resources",
    "fit",
    "load",
    "write_dataset",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from raymix.api import Model, fit, load
    from raymix.data.frames import write_dataset

#: names imported when first used, so that ``import raymix`` (every recipe does) stays light
_LAZY = {
    "Model": "raymix.api",
    "fit": "raymix.api",
    "load": "raymix.api",
    "write_dataset": "raymix.data.frames",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raymix' has no attribute {name!r}")
