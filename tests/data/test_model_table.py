"""The checkpoint's Arrow model tables: what is written is what is selected back, by id."""

import numpy as np
import pytest

from raymix.data.model_table import (
    has_model_tables,
    read_model_tables,
    select_models,
    write_model_table,
)
from raymix.solvers.entity import EntityModels


def models(n: int, seed: int, variances: bool) -> EntityModels:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, n)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = np.concatenate([np.sort(rng.choice(8, c, replace=False)) for c in counts])
    return EntityModels(
        rng.normal(size=n),
        ptr,
        index.astype(np.int64),
        rng.normal(size=ptr[-1]),
        rng.random(n) > 0.2,
        rng.integers(1, 9, n).astype(np.int32),
        rng.random(ptr[-1] + n) if variances else None,
    )


def entity(m: EntityModels, k: int):
    intercept, index, value = m.coefficients(k)
    return intercept, index.tolist(), value.tolist(), bool(m.converged[k]), int(m.n_iter[k])


@pytest.mark.parametrize("ids", ["int", "str"])
@pytest.mark.parametrize("variances", [False, True])
def test_models_come_back_by_id_from_every_part(tmp_path, ids, variances):
    parts = [models(30, 0, variances), models(20, 1, variances)]
    names = [np.arange(0, 60, 2), np.arange(1, 41, 2)]  # two actors' entities, interleaved
    if ids == "str":
        names = [np.array([f"u{i}" for i in n], dtype=object) for n in names]
    for k, (m, n) in enumerate(zip(parts, names, strict=True)):
        write_model_table(tmp_path / f"part-{k:05d}.arrow", n, m)
    assert has_model_tables(tmp_path)

    wanted = np.concatenate([names[1][::-1], names[0][:5]])  # any order, across parts
    got, found = select_models(read_model_tables(tmp_path), wanted, dim=8)
    assert found == wanted.size
    expected = [(1, k) for k in range(19, -1, -1)] + [(0, k) for k in range(5)]
    for j, (part, k) in enumerate(expected):
        assert entity(got, j) == entity(parts[part], k)
        if variances:
            source = parts[part].variances[
                parts[part].variance_ptr[k] : parts[part].variance_ptr[k + 1]
            ]
            np.testing.assert_array_equal(
                got.variances[got.variance_ptr[j] : got.variance_ptr[j + 1]], source
            )
    assert (got.variances is None) == (not variances)


def test_unknown_entities_get_empty_models_and_extra_features_are_dropped(tmp_path):
    m = models(10, 2, variances=True)
    write_model_table(tmp_path / "part-00000.arrow", np.arange(10), m)
    got, found = select_models(read_model_tables(tmp_path), np.array([3, 99, 7]), dim=4)
    assert found == 2
    assert entity(got, 1) == (0.0, [], [], True, 0)
    for j, k in ((0, 3), (2, 7)):
        intercept, index, value = m.coefficients(k)
        assert entity(got, j)[:3] == (
            intercept,
            index[index < 4].tolist(),
            value[index < 4].tolist(),
        )
    assert got.variances is None  # not every entity has them: none are kept


def test_ints_and_their_decimal_text_match(tmp_path):
    m = models(5, 3, variances=False)
    write_model_table(tmp_path / "part-00000.arrow", np.arange(5), m)
    got, found = select_models(read_model_tables(tmp_path), np.array(["4", "0"], dtype=object), 8)
    assert found == 2 and entity(got, 0) == entity(m, 4) and entity(got, 1) == entity(m, 0)


def test_no_tables_is_an_error_naming_the_directory(tmp_path):
    assert not has_model_tables(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_model_tables(tmp_path)


def test_a_table_without_models_gives_every_entity_an_empty_model(tmp_path):
    none = EntityModels(np.zeros(0), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0),
                        np.zeros(0, bool), np.zeros(0, np.int32))  # fmt: skip
    write_model_table(tmp_path / "part-00000.arrow", np.zeros(0, np.int64), none)
    got, found = select_models(read_model_tables(tmp_path), np.array([5, 6]), dim=8)
    assert found == 0 and got.n_entities == 2
    assert entity(got, 0) == entity(got, 1) == (0.0, [], [], True, 0)
