"""Stacking and reordering rows without a second copy gives the same rows as the plain way."""

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.data.rows import Rows, concat_rows


def rows(X, start=0):
    n = X.shape[0]
    uid = np.arange(start, start + n)
    return Rows(uid, uid % 2, np.ones(n), np.zeros(n), X, entity=uid % 3)


@pytest.mark.parametrize("dense", [True, False])
def test_concat_matches_stacking_and_releases_parts(dense):
    full = sp.random(12, 5, density=0.4, format="csr", random_state=1)
    pieces = [full[0:4], full[4:4], full[4:9], full[9:12]]  # sliced CSR keeps the parent's data
    if dense:
        pieces = [p.toarray().astype(np.float32) for p in pieces]
    parts = [rows(p, start) for p, start in zip(pieces, (0, 4, 4, 9), strict=True)]
    stacked = concat_rows(parts, 5)
    got = stacked.X if dense else stacked.X.toarray()
    assert np.array_equal(got, full.toarray().astype(got.dtype))
    assert np.array_equal(stacked.uid, np.arange(12))
    assert np.array_equal(stacked.entity, np.arange(12) % 3)
    assert all(p.X is None for p in parts if len(p))  # given up as they were copied


def test_permute_in_place_equals_take():
    X = sp.random(20, 4, density=0.5, format="csr", random_state=3)
    order = np.random.default_rng(1).permutation(20)
    want = rows(X).take(order)
    got = rows(X)
    got.permute(order)
    assert np.array_equal(got.X.toarray(), want.X.toarray())
    for name in ("uid", "label", "weight", "offset", "entity"):
        assert np.array_equal(getattr(got, name), getattr(want, name))
