"""Hyper-parameter search over recipes with Ray Tune, trials reusing the prepared data.

    from raymix.tune import search
    result = search("recipes/movielens_lr.py", "tune/movielens_l2.py")
    print(result.table()); result.best_recipe  # also written as OUT/best.json

See :mod:`raymix.tune.space` for the space file, :mod:`raymix.tune.search` for the outputs.
"""

from raymix.tune.search import TuneResult, search
from raymix.tune.space import SearchSpace, load_space

__all__ = ["SearchSpace", "TuneResult", "load_space", "search"]
