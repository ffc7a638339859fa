"""The fixed-effect coordinate without Ray: its workers are handed in, here one in-process
worker over the pure fit (what ``raymix.engine.fixed_effect`` runs on each Ray worker)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from raymix import Columns, FixedEffect
from raymix.coordinates.base import HolderRows, WorkerRows
from raymix.coordinates.fixed_effect import FixedEffectCoordinate
from raymix.coordinates.fixed_effect_fit import (
    DesignCommand,
    DesignReply,
    FitCommand,
    FitReply,
    Objective,
    design_columns,
    fit_fixed_effect,
    linear_scores,
    weighted_cross,
)
from raymix.coordinates.inputs import build_source
from raymix.data.avro.models import read_models
from raymix.data.rows import concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.descent import descend, load
from raymix.solvers.glm import GLMLoss

from ..engine.test_fixed_effect_workers import synthetic_parquet


def rows_of(source: Source):
    parts = [rows_from_table(read_table(source, p), source.schema) for p in source.files]
    return concat_rows(parts, source.schema.dim)


class OneWorker:
    """A fixed effect's worker group of one worker, in this process."""

    def start(self, spec: FixedEffect, train: Source, validation: Source | None) -> None:
        self.spec_intercept = spec.fit_intercept
        self.rows = rows_of(train)
        self.loss = GLMLoss(self.rows.X, self.rows.label, weights=self.rows.weight)
        self.requests = 0

    def loaded(self) -> list[WorkerRows]:
        r = self.rows
        empty = HolderRows(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
        return [WorkerRows(HolderRows(r.uid, r.label, r.weight, r.offset), empty)]

    def share(self, value):
        return value

    def request(self, command: FitCommand | DesignCommand) -> list:
        self.requests += 1
        pos = np.searchsorted(command.train_index, self.rows.uid)
        if isinstance(command, DesignCommand):  # as the engine's Shard.design answers
            X, intercept = self.rows.X, self.spec_intercept
            if command.columns is not None:
                return [DesignReply(design_columns(X, *command.columns, intercept), pos)]
            return [DesignReply(weighted_cross(X, self.rows.weight, command.against[pos], intercept), pos)]  # fmt: skip
        self.loss.set_offsets(command.train_offsets[pos])
        loss = self.loss
        objective = Objective(loss.value_grad, loss.hessian, loss.n_params, loss.column_stats())
        fit = fit_fixed_effect(command.spec, objective, command.theta)
        scores = linear_scores(self.rows.X, fit.theta, command.spec.fit_intercept)
        return [FitReply(fit.theta, scores, pos, summary=fit.summary, variances=fit.variances)]

    def restarts(self) -> int:
        return 0

    def stop(self) -> None:
        pass


def test_a_fixed_effect_runs_in_process_and_writes_its_model(tmp_path):
    data = synthetic_parquet(tmp_path / "data", n=900, d=4)
    train = build_source(data, Columns(), split="train", bag="global")
    spec = FixedEffect(name="global", feature_bag="global", l2=1.0, sparsity_threshold=0)
    workers = OneWorker()
    coordinate = FixedEffectCoordinate(spec, train, None, None, workers)
    state = load([coordinate])
    descend([coordinate], state, passes=1, metric="auc")
    assert workers.requests == 1
    info = state.steps[0].info
    assert info["converged"] and info["rows_per_worker"] == [900]
    assert info["worker_restarts"] == 0

    rows = rows_of(train)
    X = rows.X.astype(np.float64)  # scikit-learn would fit float32 rows in float32
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000)
    ref.fit(X, rows.label, sample_weight=rows.weight)
    assert coordinate.theta is not None
    np.testing.assert_allclose(coordinate.theta[:-1], ref.coef_[0], atol=1e-6)
    expected = ref.decision_function(X)
    order = np.argsort(rows.uid)
    np.testing.assert_allclose(state.train.scores["global"], expected[order], atol=1e-6)

    (path,) = coordinate.write_models(tmp_path / "models")
    (record,) = list(read_models(path))
    means = {m["name"]: m["value"] for m in record["means"]}
    assert means.pop("(INTERCEPT)") == pytest.approx(coordinate.theta[-1], abs=1e-12)
    assert sorted(means.values()) == pytest.approx(sorted(coordinate.theta[:-1]), abs=1e-12)
