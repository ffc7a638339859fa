"""The global row order: positions of uids, by offset (contiguous uids) or by search."""

import numpy as np
import pytest

from raymix.coordinates.base import RowIndex
from raymix.errors import DataError


@pytest.mark.parametrize(
    "uids",
    [np.arange(1000, 3000), np.arange(0, 6000, 3), np.array([5, -2, 40, 7, 1 << 40])],
    ids=["contiguous", "strided", "scattered"],
)
def test_positions_are_where_each_uid_sits_in_the_sorted_order(uids):
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(uids)
    index = RowIndex([shuffled[: uids.size // 2], shuffled[uids.size // 2 :]], "training")
    assert index._contiguous == (uids.size == 2000 and uids[1] - uids[0] == 1)
    query = rng.permutation(uids)[: uids.size // 2 + 1]  # any order, any subset
    pos = index.positions(query, "coordinate 'x'")
    np.testing.assert_array_equal(pos, np.searchsorted(np.sort(uids), query))
    assert pos.dtype == np.int64


@pytest.mark.parametrize(
    "uids, stranger",
    [(np.arange(10, 20), s) for s in (9, 20, -1)]  # contiguous: below, past the end
    + [(np.array([10, 12, 14, 16]), s) for s in (9, 13, 17, -1)],  # searched: also a gap
)
def test_an_unknown_uid_is_named(uids, stranger):
    index = RowIndex([uids], "validation")
    with pytest.raises(
        DataError, match=f"'x' has uid {stranger} that the first coordinate's validation"
    ):
        index.positions(np.array([uids[0], stranger, uids[-1]]), "coordinate 'x'")


def test_an_empty_index_knows_no_uid():
    index = RowIndex([], "training")
    assert index.positions(np.zeros(0, np.int64), "x").size == 0
    with pytest.raises(DataError, match="has uid 3"):
        index.positions(np.array([3]), "x")
