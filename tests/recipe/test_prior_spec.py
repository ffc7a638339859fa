"""A coordinate's prior in the recipe: fields, defaults, rules, and --prior for every coordinate."""

import pytest
from pydantic import ValidationError

from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.recipe.spec import DeepEffect, Prior


def test_a_prior_writes_full_variances_unless_told_which():
    assert RandomEffect(name="u", entity="user", prior={"models": "out"}).variance == "full"
    given = RandomEffect(name="u", entity="user", prior={"models": "out"}, variance="simple")
    assert given.variance == "simple"
    assert RandomEffect(name="u", entity="user").variance is None  # no prior: unchanged


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"prior": {"models": "out", "weight": 0}}, "greater than 0"),
        ({"prior": {"models": "out", "forgetting": 1.0}}, "less than 1"),
        ({"prior": {"models": "out"}, "l2": "auto"}, "not 'auto'"),
        ({"prior": {"models": "out"}, "locked": True, "warm_start": "m"}, "takes no prior"),
        ({"prior": {"models": "out", "wieght": 2}}, "Extra inputs"),
    ],
)
def test_bad_priors_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        RandomEffect(name="u", entity="user", **fields)


def test_a_fixed_effect_keeps_no_covariance_matrices():
    with pytest.raises(ValidationError, match="variance='covariance'"):
        FixedEffect(name="g", variance="covariance")
    assert RandomEffect(name="u", entity="user", variance="covariance").variance == "covariance"


def test_with_prior_sets_every_fitted_fixed_and_random_effect():
    recipe = Recipe(
        data=Data(train="t"),
        coordinates=[
            FixedEffect(name="g", feature_bag="g"),
            RandomEffect(name="u", entity="user", variance="simple"),
            RandomEffect(name="i", entity="item", locked=True, warm_start="m"),
            DeepEffect(name="d", vocab="v"),
        ],
        output="o",
    )
    updated = recipe.with_prior("yesterday", weight=2.0)
    g, u, i, d = updated.coordinates
    assert g.prior == Prior(models="yesterday", weight=2.0) and g.variance == "full"
    assert u.prior == Prior(models="yesterday", weight=2.0) and u.variance == "simple"
    assert i.prior is None and i.locked  # a locked coordinate is not fitted
    assert d == recipe.coordinates[3]
    assert recipe.coordinates[0].prior is None  # the recipe itself is unchanged
