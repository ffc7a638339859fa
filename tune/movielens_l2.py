"""The regularization of every coordinate of recipes/movielens_lr.py, searched together.

    raymix tune recipes/movielens_lr.py --search tune/movielens_l2.py

GDMix's defaults are l2 = 1.0 everywhere, one pass and unregularized per-entity intercepts.
A per-user or per-movie intercept is exactly a GLMM's random intercept, and a GLMM shrinks it
towards zero; so the search also decides whether the random effects' L2 covers the intercept.
ASHA stops trials whose first passes are already behind.
"""

from ray import tune

space = {
    "coordinates.global.l2": tune.loguniform(1e-2, 1e3),
    "coordinates.per-user.l2": tune.loguniform(1e-2, 1e3),
    "coordinates.per-movie.l2": tune.loguniform(1e-2, 1e3),
    "coordinates.per-user.regularize_intercept": tune.choice([False, True]),
    "coordinates.per-movie.regularize_intercept": tune.choice([False, True]),
    "passes": tune.choice([1, 2, 3]),
}
metric = "auc"
num_samples = 32
searcher = "optuna"
scheduler = "asha"
max_concurrent = 2
