"""A restarted fixed-effect fit retraces the dead attempt's logged evaluations exactly."""

import numpy as np
import pytest

from raymix import LBFGS, FixedEffect
from raymix.coordinates.fixed_effect_fit import Objective, fit_fixed_effect
from raymix.engine.mailbox import Mailbox
from raymix.solvers.glm import GLMLoss
from raymix.solvers.replay import EvaluationLog, Replay, loggable, replaying


class Killed(Exception):
    pass


def loss_of(seed: int) -> GLMLoss:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 30)) * np.geomspace(0.05, 20, 30)  # ill-conditioned: a long fit
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-X @ rng.normal(size=30)))).astype(float)
    return GLMLoss(X, y)


SPEC = FixedEffect(
    name="global",
    feature_bag="g",
    l2=1e-3,
    solver=LBFGS(gtol=1e-9, tolerance=1e-14, precondition=False),
)


class Attempt:
    """One attempt at command 1's fit: answered from ``logged``, logging to the mailbox
    ``saved`` (as the fixed effect's rank 0 does), killed after ``die_after`` computed
    evaluations."""

    def __init__(self, loss, saved: Mailbox, logged=(), die_after=None):
        self.loss, self.die_after, self.computed, self.points = loss, die_after, 0, []
        self.replay = Replay(list(logged))
        log = EvaluationLog(
            lambda start, batch: saved.save_progress(1, start, batch), loss.n_params, 5
        )
        self.objective = Objective(
            replaying(self.value_grad, self.replay, log),
            loss.hessian,
            loss.n_params,
            loss.column_stats(),
            lambda: self.replay.replayed,
        )

    def value_grad(self, x):
        if self.die_after is not None and self.computed == self.die_after:
            raise Killed
        self.computed += 1
        self.points.append(np.array(x))
        return self.loss.value_grad(x)


def test_a_restarted_fit_ends_bit_for_bit_where_the_undisturbed_one_ends():
    loss = loss_of(0)
    calm = Attempt(loss, Mailbox())
    whole = fit_fixed_effect(SPEC, calm.objective, None)
    assert calm.computed > 60  # a long enough fit to be killed in the middle

    saved = Mailbox()
    with pytest.raises(Killed):
        fit_fixed_effect(SPEC, Attempt(loss, saved, die_after=43).objective, None)
    assert sorted(saved.progress[1]) == list(range(40))  # eight batches of five reached the mailbox

    again = Attempt(loss, saved, logged=saved.saved_progress(1))
    fit = fit_fixed_effect(SPEC, again.objective, None)
    np.testing.assert_array_equal(fit.theta, whole.theta)
    assert fit.summary.replayed_evaluations == 40
    assert again.computed == calm.computed - 40
    assert fit.summary.iterations == whole.summary.iterations


def test_resuming_from_the_saved_iterate_alone_would_not_be_exact():
    """Why the log: L-BFGS restarted at an iterate, without its curvature pairs, ends
    elsewhere (the chaos benchmark's one inexact run)."""
    loss = loss_of(0)
    calm = Attempt(loss, Mailbox())
    whole = fit_fixed_effect(SPEC, calm.objective, None)
    restarted = fit_fixed_effect(SPEC, Attempt(loss, Mailbox()).objective, calm.points[39])
    assert not np.array_equal(restarted.theta, whole.theta)


def test_a_log_that_leaves_the_path_is_used_only_up_to_there():
    """A log of another fit of the same data (another l2): its points agree at first and
    then part; the replay takes the common part and computes the rest."""
    loss, saved = loss_of(0), Mailbox()
    other = FixedEffect(name="global", feature_bag="g", l2=10.0, solver=SPEC.solver)
    fit_fixed_effect(other, Attempt(loss, saved).objective, None)
    logged = saved.saved_progress(1)
    whole = fit_fixed_effect(SPEC, Attempt(loss, Mailbox()).objective, None)
    fit = fit_fixed_effect(SPEC, Attempt(loss, Mailbox(), logged=logged).objective, None)
    assert 1 <= fit.summary.replayed_evaluations < len(logged)
    np.testing.assert_array_equal(fit.theta, whole.theta)


def test_the_log_keeps_within_its_bytes():
    sent = []
    log = EvaluationLog(lambda start, batch: sent.append((start, len(batch))), 10, every=2)
    for i in range(6):
        log.add(i, np.zeros(10), 0.0, np.zeros(10))
    assert sent == [(0, 2), (2, 2), (4, 2)]
    assert loggable(10**9) == 0
    huge = EvaluationLog(lambda start, batch: sent.append(start), 10**9, every=1)
    huge.add(0, np.zeros(1), 0.0, np.zeros(1))
    assert len(sent) == 3
