"""MovieLens 100k as GDMix trains it with DeText: a wide-and-deep global model + per-user +
per-movie logistic regressions.

Prepare the data first (GDMix's preprocessing, seeded split; it also writes ``detext/``: the
cleaned movie titles with the ``global`` bag, and a deterministic title vocabulary):

    raymix data movielens --source ../shared/data/ml-100k --dest data/movielens

The global model is DeText as GDMix configures it: the title through a 64-d word embedding
and a CNN (window 3, 50 filters, ReLU, max-pool over time), the 44 ``global`` features as the
wide part, one logit, sigmoid cross-entropy with the offset added, AdamW (lr 0.002, linear
decay, clip norm 1), 1,000 steps of 64 rows. The random effects are those of
``movielens_lr.py`` and use the deep model's logit as offset.

Data-parallel training: ``--set coordinates.global.workers=2`` (TensorFlow collectives), and
``--set coordinates.global.backend=horovod`` for Horovod (``scripts/install_horovod.sh``).
"""

import os

from raymix import AdamW, Data, DeepEffect, RandomEffect, Recipe

ROOT = os.environ.get("RAYMIX_MOVIELENS", "data/movielens")


def bag_data(bag: str) -> Data:
    return Data(
        train=f"{ROOT}/{bag}/trainingData",
        validation=f"{ROOT}/{bag}/validationData",
        metadata=f"{ROOT}/metadata/tensor_metadata.json",
        feature_lists=f"{ROOT}/featureList",
    )


detext = Data(
    train=f"{ROOT}/detext/trainingData",
    validation=f"{ROOT}/detext/validationData",
    metadata=f"{ROOT}/detext/metadata/tensor_metadata.json",
)

recipe = Recipe(
    name="movielens-detext",
    data=detext,
    coordinates=[
        DeepEffect(
            name="global",
            text_column="title",
            vocab=f"{ROOT}/detext/vocab.txt",
            feature_bag="global",
            embedding_size=64,
            filters=50,
            window_sizes=[3],
            optimizer=AdamW(weight_decay=0.01),
            learning_rate=0.002,
            steps=1000,
            batch_size=64,
            workers=0,
            backend="tensorflow",
        ),
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
    output="out/movielens-detext",
)
