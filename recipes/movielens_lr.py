"""MovieLens 100k as GDMix trains it: global + per-user + per-movie logistic regression.

Prepare the data first (GDMix's preprocessing, seeded split):

    raymix data movielens --source ../shared/data/ml-100k --dest data/movielens

GDMix's settings: l2 = 1.0 everywhere, unregularized intercepts, L-BFGS with 100 iterations
and history 10 for the global model. As GDMix actually does (its README has them swapped),
the per-user models use the MOVIE features and the per-movie models the USER features.
Paths are relative to the current directory; override with --set, e.g.
``--set data.train=/elsewhere/global/trainingData``.
"""

import os

from raymix import Data, FixedEffect, RandomEffect, Recipe

ROOT = os.environ.get("RAYMIX_MOVIELENS", "data/movielens")


def bag_data(bag: str) -> Data:
    return Data(
        train=f"{ROOT}/{bag}/trainingData",
        validation=f"{ROOT}/{bag}/validationData",
        metadata=f"{ROOT}/metadata/tensor_metadata.json",
        feature_lists=f"{ROOT}/featureList",
    )


recipe = Recipe(
    name="movielens-lr",
    data=bag_data("global"),
    coordinates=[
        FixedEffect(name="global", feature_bag="global", l2=1.0, solver="lbfgs"),
        RandomEffect(
            name="per-user",
            entity="user_id",
            feature_bag="per_user",
            l2=1.0,
            data=bag_data("per_user"),
        ),
        RandomEffect(
            name="per-movie",
            entity="movie_id",
            feature_bag="per_movie",
            l2=1.0,
            data=bag_data("per_movie"),
        ),
    ],
    passes=1,
    output="out/movielens-lr",
)
