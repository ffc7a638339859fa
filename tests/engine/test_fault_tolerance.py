"""Real process kills through Ray: a random-effect actor, a fixed-effect worker, a deep worker.

The fit goes on and the models equal those of an undisturbed run: random effects and the
deep network exactly, the fixed effect to 1e-6.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest
import ray

from raymix import LBFGS, Data, DeepEffect, FixedEffect, RandomEffect, Recipe, Resources
from raymix.descent import descend, load
from raymix.engine.fixed_effect import SAVE_EVERY
from raymix.run import build_coordinates, plan

from .test_random_effect_actors import synthetic

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def run(recipe, during=None):
    """Fit in-process (no output written); ``during(coordinates, state, step)`` after each step."""
    coordinates = build_coordinates(plan(recipe))
    try:
        state = load(coordinates)
        descend(
            coordinates,
            state,
            passes=recipe.passes,
            after_step=(lambda st, step: during(coordinates, st, step)) if during else None,
        )
        fe = next((c for c in coordinates if c.kind == "fixed_effect"), None)
        re = next((c for c in coordinates if c.kind == "random_effect"), None)
        theta = None if fe is None else fe.theta.copy()
        models = None
        if re is not None:
            models = list(re.pool.models[re.name])
        return theta, models, state
    finally:
        for c in coordinates:
            c.close()


def test_killed_random_effect_actor_is_rebuilt_and_models_equal(ray_session, tmp_path):
    data = synthetic(tmp_path / "data", n=20000, users=2000)
    recipe = Recipe(
        data=data,
        coordinates=[
            FixedEffect(name="global", feature_bag="g"),
            RandomEffect(name="per_user", entity="user_id", feature_bag="g"),
        ],
        passes=3,
        output=str(tmp_path / "unused"),
        resources=Resources(actors=2, buckets=8),
    )
    _, calm, calm_state = run(recipe)
    killed = {}

    def kill_in_pass_two(coordinates, state, step):
        if step.pass_index == 1 and step.coordinate == "global" and not killed:
            pool = coordinates[1].pool
            victim = pool.actors[1]
            killed["pid"] = ray.get(victim.pid.remote())
            # killed now, before the next call: a timer here fired after the (fast) run's end
            ray.kill(victim, no_restart=False)
            killed["pool"] = pool

    _, disturbed, state = run(recipe, during=kill_in_pass_two)
    assert killed and killed["pool"].rebuilds >= 1
    assert ray.get(killed["pool"].actors[1].pid.remote()) != killed["pid"]  # a new process
    for a, b in zip(calm, disturbed, strict=True):
        for field in ("intercepts", "coef_ptr", "coef_index", "coef_value"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(calm_state.validation.total(), state.validation.total())


def test_killed_fixed_effect_worker_group_retraces_the_fit_exactly(ray_session, tmp_path):
    data = synthetic(tmp_path / "data", n=60000, users=50, d=40, files=4)
    solver = LBFGS(max_iter=400, precondition=False, gtol=1e-9, tolerance=1e-14)  # a long fit
    recipe = Recipe(
        data=data,
        coordinates=[
            FixedEffect(name="global", feature_bag="g", workers=2, solver=solver, l2=1e-3)
        ],
        output=str(tmp_path / "unused"),
    )
    calm, _, _ = run(recipe)
    killed = {}

    def killer(coordinates):
        fe = coordinates[0]
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            # some evaluations logged: kill mid-fit
            if fe.worker_pids and fe.service.last_id >= 1 and fe.service.saved_progress():
                os.kill(fe.worker_pids[1], signal.SIGKILL)
                killed["pid"] = fe.worker_pids[1]
            time.sleep(0.01)

    coordinates = build_coordinates(plan(recipe))
    try:
        state = load(coordinates)
        thread = threading.Thread(target=killer, args=(coordinates,), daemon=True)
        thread.start()
        descend(coordinates, state, passes=1)
        thread.join(timeout=5)
        fe = coordinates[0]
        info = state.steps[-1].info
        assert killed, "the fit ended before a worker could be killed"
        assert info["worker_restarts"] >= 1
        assert info["replayed_evaluations"] >= SAVE_EVERY  # retraced, not computed again
        np.testing.assert_array_equal(fe.theta, calm)  # and so exactly the undisturbed fit
    finally:
        for c in coordinates:
            c.close()


@pytest.mark.parametrize("backend", ["tensorflow", "horovod"])
def test_killed_deep_worker_group_is_restarted_and_the_fit_ends_as_undisturbed(
    backend, ray_session, tmp_path
):
    from ..deep.conftest import SPECIAL, WORDS, write_text_rows
    from ..deep.test_data_parallel import require

    require(backend)

    root = tmp_path / "text"
    write_text_rows(root / "train" / "part-00000.parquet", 2000, seed=1)
    write_text_rows(root / "validation" / "part-00000.parquet", 400, seed=2, start_uid=10_000)
    (root / "vocab.txt").write_text("".join(f"{t}\n" for t in SPECIAL + WORDS[:20]))
    deep = DeepEffect(
        name="deep",
        vocab=str(root / "vocab.txt"),
        feature_bag="wide",
        embedding_size=8,
        filters=6,
        window_sizes=[2, 3],
        max_len=5,
        optimizer="adam",
        learning_rate=0.01,
        steps=1500,  # a fit of some seconds, to be killed in
        batch_size=64,
        seed=7,
        workers=2,
        backend=backend,
    )
    data = Data(train=str(root / "train"), validation=str(root / "validation"))
    recipe = Recipe(data=data, coordinates=[deep], passes=2, output=str(tmp_path / "unused"))

    def weights(coordinates):
        return {k: v.copy() for k, v in coordinates[0].weights.items()}

    coordinates = build_coordinates(plan(recipe))
    try:
        state = load(coordinates)
        descend(coordinates, state, passes=2)
        calm = weights(coordinates)
    finally:
        for c in coordinates:
            c.close()

    killed = {}

    def killer(coordinates):
        """Kill rank 1 while the second pass's fit runs (the group restores pass 1's state)."""
        service = coordinates[0].service
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if service.last_id >= 2 and service.mailbox.call("collect", 2, 0.0) is None:
                time.sleep(1.0)  # into the fit's steps
                if service.mailbox.call("collect", 2, 0.0) is None:
                    os.kill(coordinates[0].worker_pids[1], signal.SIGKILL)
                    killed["pid"] = coordinates[0].worker_pids[1]
            time.sleep(0.01)

    coordinates = build_coordinates(plan(recipe))
    try:
        state = load(coordinates)
        thread = threading.Thread(target=killer, args=(coordinates,), daemon=True)
        thread.start()
        descend(coordinates, state, passes=2)
        thread.join(timeout=5)
        assert killed, "the fit ended before a worker could be killed"
        info = state.steps[-1].info
        assert info["worker_restarts"] >= 1 and info["workers"] == 2
        assert state.steps[0].info["worker_restarts"] == 0
        disturbed = weights(coordinates)
    finally:
        for c in coordinates:
            c.close()
    for name, value in calm.items():
        np.testing.assert_array_equal(disturbed[name], value, err_msg=name)
