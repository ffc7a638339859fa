"""GAME on Photon ML's own Yahoo! Music fixture, read as Photon ML keeps it (Avro records).

``yahoo-music-test.avro`` (9,195 ratings, 1-5) has entity ids ``userId`` and ``songId``, the
rating as ``response`` and three feature bags of ``{name, term, value}`` records: ``features``
(ids as features), ``userFeatures`` and ``songFeatures`` (latent factors). The model: a linear
fixed effect on ``userFeatures`` plus per-user and per-song linear random effects, with the
``l2`` of Photon ML's integration test (10, 1 and 10, as its ``model-spec``). Nearly every user
rates once in this file, so only the fixed effect on the users' factors generalises to rows
held out (tests/test_photon_input_fit.py fits a split: RMSE 1.34 against the mean's 1.55); Photon's
``features`` bag, ids as features, barely beats the mean held out (1.54, sklearn's ridge too).
The ``userFeatures`` and ``songFeatures`` bags are indexed through Photon's feature lists
(``name<TAB>term``; the 20 listed features of 30, the others dropped as Photon ML drops them);
a bag without a list is indexed by its distinct ``(name, term)`` pairs in the train files.
The file is small: it is both the train and the validation split here. The root is
``$RAYMIX_PHOTON`` (default ``../shared/data/photon-fixtures``).
"""

import os

from raymix import Data, FixedEffect, RandomEffect, Recipe

ROOT = os.environ.get("RAYMIX_PHOTON", "../shared/data/photon-fixtures")
RATINGS = f"{ROOT}/input/yahoo-music-test.avro"

recipe = Recipe(
    name="photon-yahoo-music",
    data=Data(train=RATINGS, validation=RATINGS, feature_lists=f"{ROOT}/feature-lists"),
    coordinates=[
        FixedEffect(name="global", feature_bag="userFeatures", task="linear", l2=10.0),
        RandomEffect(
            name="per-user", entity="userId", feature_bag="userFeatures", task="linear", l2=1.0
        ),
        RandomEffect(
            name="per-song", entity="songId", feature_bag="songFeatures", task="linear", l2=10.0
        ),
    ],
    passes=2,
    metric="rmse",
    output="out/photon-yahoo-music",
)
