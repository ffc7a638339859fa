"""GLMix on synthetic data with planted coefficients: global + per-user + per-item logistic models.

Generate the data first (``summary.json`` there gives the AUC of the true model to aim for):

    raymix data synthetic --dest data/synthetic --rows 1000000 --users 100000 --items 10000

One directory holds every column, and each coordinate reads only its own: ``global`` (a dense
bag), ``per_user`` and ``per_item`` (sparse bags). The per-entity ``l2`` is the precision of
the planted prior, ``1 / sigma^2`` with the generator's default ``sigma = 0.5 / sqrt(11)`` for
10 entity features, and the per-entity intercepts are regularized too (they are drawn from
the same prior, and an entity with one row would otherwise run off to infinity); change them
with ``--set`` if you generate with other ``--entity-features`` or ``--user-sigma``. The root
is ``$RAYMIX_SYNTHETIC`` (default ``data/synthetic``), relative to the current directory.
"""

import os

from raymix import Data, FixedEffect, RandomEffect, Recipe

ROOT = os.environ.get("RAYMIX_SYNTHETIC", "data/synthetic")
ENTITY_L2 = 44.0  # 1 / (0.5 / sqrt(10 + 1))^2

recipe = Recipe(
    name="synthetic-glmix",
    data=Data(
        train=f"{ROOT}/train",
        validation=f"{ROOT}/validation",
        metadata=f"{ROOT}/metadata/tensor_metadata.json",
        feature_lists=f"{ROOT}/featureList",
    ),
    coordinates=[
        FixedEffect(name="global", feature_bag="global", l2=1.0, solver="lbfgs"),
        RandomEffect(
            name="per-user",
            entity="user_id",
            feature_bag="per_user",
            l2=ENTITY_L2,
            regularize_intercept=True,
        ),
        RandomEffect(
            name="per-item",
            entity="item_id",
            feature_bag="per_item",
            l2=ENTITY_L2,
            regularize_intercept=True,
        ),
    ],
    passes=1,  # the planted effects are independent: a second pass moves the AUC < 0.001
    output="out/synthetic-glmix",
)
