"""A coordinate's inputs checked before a run: a warm start against its bag (no Ray)."""

import numpy as np
import pytest

from raymix.coordinates.inputs import warm_start_match
from raymix.data.avro.models import model_record, write_models
from raymix.errors import DataError

NAMES = [(f"f{j}", "t") for j in range(6)]


def model(path, names, intercept=0.5):
    index = np.arange(len(names))
    write_models(
        path / "part-00000.avro",
        [model_record("m", intercept, index, np.ones(len(names)), names, "logistic")],
    )
    return str(path)


def test_a_warm_start_sharing_no_feature_is_refused_naming_it_and_the_bag(tmp_path):
    path = model(tmp_path, [("g1", "t"), ("g2", "")])
    with pytest.raises(DataError) as caught:
        warm_start_match(path, NAMES, 6, "global")
    assert caught.value.path == path
    assert "shares none of its 2 features with bag 'global'" in caught.value.reason
    assert "g1|t, g2" in caught.value.reason and "f0|t" in caught.value.reason


def test_a_partial_match_is_counted(tmp_path):
    assert warm_start_match(model(tmp_path, NAMES[:2] + [("g", "t")]), NAMES, 6, "b") == (2, 3)
    assert warm_start_match(model(tmp_path, NAMES), NAMES, 6, "b") == (6, 6)


def test_without_a_feature_list_names_are_indices_within_the_bag(tmp_path):
    path = model(tmp_path, [("0", ""), ("5", ""), ("6", ""), ("x", "")])
    assert warm_start_match(path, None, 6, "b") == (2, 4)
    with pytest.raises(DataError, match="shares none of its 4 features"):
        warm_start_match(path, None, 0, "b")


def test_an_intercept_only_model_has_nothing_to_compare(tmp_path):
    assert warm_start_match(model(tmp_path, []), NAMES, 6, "b") is None
