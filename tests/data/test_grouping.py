import numpy as np
import scipy.sparse as sp

from raymix.data.grouping import group_rows, lookup_entities, stable_bucket
from raymix.data.rows import Rows


def rows(entity, uid=None):
    n = len(entity)
    uid = np.arange(n, dtype=np.int64)[::-1].copy() if uid is None else uid
    return Rows(
        uid=uid,
        label=np.zeros(n),
        weight=np.ones(n),
        offset=np.zeros(n),
        X=sp.csr_matrix((n, 3)),
        entity=np.asarray(entity),
    )


def test_stable_bucket_is_fixed_across_runs_and_types():
    ints = stable_bucket(np.array([0, 1, 2, 12345678901]), 7)
    np.testing.assert_array_equal(ints, stable_bucket(np.array([0, 1, 2, 12345678901]), 7))
    strings = stable_bucket(np.array(["alice", "bob", "alice"], dtype=object), 1000)
    assert strings[0] == strings[2] != strings[1]
    # a golden value: a change of the hash would silently re-route every entity
    np.testing.assert_array_equal(stable_bucket(np.array([42, 0, -1]), 1000), [413, 535, 936])
    assert stable_bucket(np.array(["alice"], dtype=object), 1000)[0] == 449
    spread = np.bincount(stable_bucket(np.arange(10000), 8), minlength=8)
    assert spread.min() > 1000


def test_group_rows_sorts_by_entity_then_uid():
    g = group_rows(rows([3, 1, 3, 2, 1]))
    np.testing.assert_array_equal(g.entities, [1, 2, 3])
    np.testing.assert_array_equal(g.entity_ptr, [0, 2, 3, 5])
    ent = g.rows.entity
    assert list(ent) == [1, 1, 2, 3, 3]
    for k in range(3):
        u = g.rows.uid[g.entity_ptr[k] : g.entity_ptr[k + 1]]
        assert np.all(np.diff(u) > 0)


def test_min_samples_makes_small_entities_passive():
    g = group_rows(rows([1, 1, 1, 2]), min_samples=2)
    np.testing.assert_array_equal(g.has_model, [True, False])
    np.testing.assert_array_equal(g.active, [True, True, True, False])


def test_max_samples_samples_deterministically_and_reweights():
    entity = [7] * 10 + [8] * 3
    g1 = group_rows(rows(entity), max_samples=4, seed=1)
    g2 = group_rows(rows(entity), max_samples=4, seed=1)
    np.testing.assert_array_equal(g1.active, g2.active)
    assert g1.active[:10].sum() == 4 and g1.active[10:].all()
    np.testing.assert_allclose(g1.fit_weight[:10], 10 / 4)
    np.testing.assert_allclose(g1.fit_weight[10:], 1.0)
    g3 = group_rows(rows(entity), max_samples=4, seed=2)
    assert not np.array_equal(g1.active, g3.active)


def test_lookup_entities():
    np.testing.assert_array_equal(
        lookup_entities(np.array([5, 1, 9]), np.array([1, 5])), [1, 0, -1]
    )


def test_first_row_is_where_each_entity_first_appeared():
    rng = np.random.default_rng(0)
    for entity in (
        rng.integers(0, 50, 500),
        np.array([f"u{v}" for v in rng.integers(0, 30, 300)], dtype=object),
        np.zeros(0, np.int64),
    ):
        r = rows(entity, uid=rng.permutation(len(entity)).astype(np.int64))
        _, first = np.unique(entity, return_index=True)
        g = group_rows(r)
        np.testing.assert_array_equal(g.first_row, first)
        assert g.first_row.dtype == np.int64


def test_string_ids_read_as_bytes_hash_as_the_same_strings():
    """TFRecord bytes_list ids arrive as bytes, Parquet strings as str: one entity, one bucket
    (non-ASCII UTF-8 bytes raised UnicodeDecodeError inside the routing task)."""
    import pyarrow as pa

    ids = ["u1", "é1", "ユーザー", ""]
    as_bytes = pa.array([s.encode() for s in ids], pa.binary()).to_numpy(zero_copy_only=False)
    as_str = np.asarray(ids, dtype=object)
    np.testing.assert_array_equal(stable_bucket(as_bytes, 97), stable_bucket(as_str, 97))
    np.testing.assert_array_equal(
        stable_bucket(np.asarray([s.encode() for s in ids]), 97), stable_bucket(as_str, 97)
    )
