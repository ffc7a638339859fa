"""raymix: generalized deep mixed models (GLMix / GAME) trained elastically on Ray.

A recipe imports what it needs from here::

    from raymix import Data, FixedEffect, RandomEffect, Recipe
"""

from raymix.errors import DataError, FitError, RaymixError, RecipeError
from raymix.recipe.spec import (
    LBFGS,
    SGD,
    Adam,
    AdamW,
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
    "Newton",
    "RaymixError",
    "RandomEffect",
    "Recipe",
    "RecipeError",
    "Resources",
]
__version__ = "0.1.0"
