"""Data parallelism is real: workers hold different rows and their gradients are summed.

Two workers (each backend) take three full-batch SGD steps on their own halves of the rows:
they end with bit-identical weights, equal (to float rounding) to one worker holding the
union of the halves, and far from what either half alone would give.
"""

import os

import numpy as np
import pytest

from raymix.coordinates.base import RowIndex
from raymix.coordinates.deep import DeepCoordinate, Weights, optimizer_config
from raymix.coordinates.inputs import build_source
from raymix.deep.inputs import read_local_shard
from raymix.deep.train import DeepTrainer, TrainConfig
from raymix.engine.collective import LocalCollective
from raymix.engine.deep_service import DeepService
from raymix.errors import DataError
from raymix.recipe.spec import Columns, Data, DeepEffect

pytestmark = [pytest.mark.ray]


def require(backend: str) -> None:
    if backend != "horovod":
        return
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise  # CI installs it (scripts/install_horovod.sh): never skip there
        pytest.skip("Horovod is not installed: run scripts/install_horovod.sh")


def deep_spec(text_data, **fields) -> DeepEffect:
    defaults = dict(
        name="deep",
        vocab=str(text_data / "vocab.txt"),
        feature_bag="wide",
        embedding_size=8,
        filters=6,
        window_sizes=[2, 3],
        hidden=[4],
        max_len=5,
        optimizer="sgd",
        learning_rate=0.5,
        schedule="constant",
        clip_norm=None,
        steps=3,
        batch_size=1000,  # more than the rows: every step is a full batch
        seed=7,
    )
    return DeepEffect(**{**defaults, **fields})


def sources(text_data):
    data = Data(train=str(text_data / "train"), validation=str(text_data / "validation"))
    return (
        build_source(data, Columns(), split="train", bag="wide"),
        build_source(data, Columns(), split="validation", bag="wide"),
    )


def started(spec, train, validation):
    coordinate = DeepCoordinate(spec, train, validation, DeepService())
    coordinate.start()
    train_rows, val_rows = coordinate.holders()
    coordinate.bind(
        RowIndex([h.uid for h in train_rows], "training"),
        RowIndex([h.uid for h in val_rows], "validation"),
    )
    return coordinate, train_rows


@pytest.mark.parametrize("backend", ["tensorflow", "horovod"])
def test_two_workers_sum_gradients_of_their_different_shards(text_data, ray_session, backend):
    require(backend)
    spec = deep_spec(text_data, workers=2, backend=backend)
    train, validation = sources(text_data)
    coordinate, holders = started(spec, train, validation)
    try:
        outcome = coordinate.fit(np.zeros(400), np.zeros(200))
        per_rank = coordinate.service.request(Weights())
    finally:
        coordinate.close()
    assert outcome.info["workers"] == 2 and outcome.info["backend"] == backend
    first, second = (h.uid for h in holders)
    assert len(first) == len(second) == 200 and not set(first) & set(second)
    for name, value in per_rank[0].items():
        np.testing.assert_array_equal(per_rank[1][name], value, err_msg=name)

    # One worker on the union of the shards, and on the first shard alone, in-process.
    union = read_local_shard(train, coordinate.text)
    config = TrainConfig(spec.steps, spec.batch_size, spec.seed, optimizer_config(spec))

    def trained(shard):
        trainer = DeepTrainer(coordinate.arch, config, LocalCollective(), shard)
        trainer.fit(np.zeros(len(shard)))
        return trainer.weights()

    together = trained(union)
    alone = trained(union.take(np.isin(union.uid, first)))
    for name, value in per_rank[0].items():
        np.testing.assert_allclose(value, together[name], atol=1e-5, err_msg=name)
    gap = max(np.abs(per_rank[0][n] - alone[n]).max() for n in alone)
    assert gap > 1e-3
    # the scores reported are the trained network's, aligned by uid
    expected = DeepTrainer(coordinate.arch, config, LocalCollective(), union, weights=per_rank[0])
    np.testing.assert_allclose(outcome.train, expected.score(union), atol=1e-5)


def test_in_process_run_is_the_single_worker_reference(text_data, ray_session):
    spec = deep_spec(text_data, workers=0)
    train, validation = sources(text_data)
    coordinate, holders = started(spec, train, validation)
    try:
        coordinate.fit(np.zeros(400), np.zeros(200))
    finally:
        coordinate.close()
    assert len(holders) == 1
    union = read_local_shard(train, coordinate.text)
    config = TrainConfig(spec.steps, spec.batch_size, spec.seed, optimizer_config(spec))
    trainer = DeepTrainer(coordinate.arch, config, LocalCollective(), union)
    trainer.fit(np.zeros(len(union)))
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(coordinate.weights[name], value, err_msg=name)


def test_a_bad_row_is_reported_with_its_file_and_row(text_data, ray_session, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(text_data / "train" / "part-00000.parquet")
    labels = table.column("response").to_pylist()
    labels[17] = None
    bad = table.set_column(table.schema.get_field_index("response"), "response", [labels])
    (tmp_path / "train").mkdir()
    pq.write_table(bad, tmp_path / "train" / "part-00000.parquet")
    data = Data(train=str(tmp_path / "train"))
    train = build_source(data, Columns(), split="train", bag="wide")
    coordinate = DeepCoordinate(deep_spec(text_data), train, None, DeepService())
    coordinate.start()
    try:
        with pytest.raises(DataError, match=r"part-00000.parquet, row 17, column 'response'"):
            coordinate.holders()
    finally:
        coordinate.close()
