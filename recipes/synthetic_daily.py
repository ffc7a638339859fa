"""Daily updates: yesterday's models as today's prior; only the users with new rows refit.

Generate time-ordered days (the same planted users every day, a few new ones each day):

    python -c "from raymix.datasets.daily import generate_days; generate_days('data/daily')"

Day 1 is an ordinary fit; every later day is an update with ``--prior`` yesterday's output
(its models and variances become each coefficient's Gaussian prior):

    RAYMIX_DAY=1 raymix fit recipes/synthetic_daily.py
    RAYMIX_DAY=2 raymix fit recipes/synthetic_daily.py --prior out/daily/day-1
    RAYMIX_DAY=3 raymix fit recipes/synthetic_daily.py --prior out/daily/day-2

Users without rows on a day keep yesterday's model (written to the day's output unchanged).
The root is ``$RAYMIX_DAILY`` (default ``data/daily``). The per-user ``l2`` is the planted
prior's precision (``1 / (0.5 / sqrt(6))^2 = 24`` for 5 features), the l2 of users and
features that no prior knows.
"""

import os

from raymix import Data, FixedEffect, RandomEffect, Recipe

ROOT = os.environ.get("RAYMIX_DAILY", "data/daily")
DAY = int(os.environ.get("RAYMIX_DAY", "1"))

recipe = Recipe(
    name=f"daily-{DAY}",
    data=Data(
        train=f"{ROOT}/day-{DAY}/train",
        validation=f"{ROOT}/day-{DAY}/validation",
        metadata=f"{ROOT}/metadata/tensor_metadata.json",
        feature_lists=f"{ROOT}/featureList",
    ),
    columns={"label": "response", "weight": "weight"},
    coordinates=[
        FixedEffect(name="global", feature_bag="global", l2=1.0, variance="full"),
        RandomEffect(
            name="per-user",
            entity="user_id",
            feature_bag="per_user",
            l2=24.0,
            regularize_intercept=True,
            variance="full",
        ),
    ],
    passes=2,
    output=f"out/daily/day-{DAY}",
)
