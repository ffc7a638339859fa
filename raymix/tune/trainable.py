"""The Ray Tune trainable: one trial actor keeps a recipe's data resident across trials.

Tune runs it with ``reuse_actors=True``: ``setup`` reads and groups the data once per trial
actor (:class:`~raymix.tune.prepared.PreparedRecipe`); for every following trial
``reset_config`` only swaps the hyper-parameters (or reloads, when the trial changes a field
that shapes the data). Each ``step`` is one coordinate-descent pass, so ASHA can stop a
trial between passes; its result holds the validation metrics of the cumulative score after
the pass (of the best pass so far when the recipe stops early) and the time spent preparing.
"""

from __future__ import annotations

import time

from ray import tune

from raymix.recipe.spec import Recipe
from raymix.tune.space import apply_config


class RecipeTrainable(tune.Trainable):
    """``config`` maps dotted recipe paths to this trial's values."""

    def setup(
        self,
        config: dict,
        recipe_json: str = "",
        actors: int | None = None,
        threads: int | None = None,
    ):
        from raymix.engine.cluster import quiet_environment
        from raymix.tune.prepared import PreparedRecipe

        quiet_environment()
        self.base = Recipe.model_validate_json(recipe_json)
        started = time.perf_counter()
        self.prepared = PreparedRecipe(
            apply_config(self.base, config), actors=actors, threads=threads
        )
        self._trial_info_fields(time.perf_counter() - started, 0.0, reused=False, reason="")

    def _trial_info_fields(self, prepare: float, reset: float, reused: bool, reason: str):
        self.trial_fields = {
            "prepare_seconds": prepare,
            "reset_seconds": reset,
            "reused_data": reused,
            "reload_reason": reason,
        }
        self.next_pass = 0

    def reset_config(self, new_config: dict) -> bool:
        started = time.perf_counter()
        loads = self.prepared.loads
        reason = self.prepared.configure(apply_config(self.base, new_config))
        seconds = time.perf_counter() - started
        reloaded = self.prepared.loads != loads
        self._trial_info_fields(
            seconds if reloaded else 0.0,
            0.0 if reloaded else seconds,
            reused=not reloaded,
            reason=reason or "",
        )
        return True

    def step(self) -> dict:
        metrics, done = self.prepared.run_pass(self.next_pass)
        self.next_pass += 1
        return {
            **metrics,
            **self.trial_fields,
            "passes_run": self.next_pass,
            "finished": done,  # Tune's own "done" is also set on trials a scheduler stops
            "done": done,
        }

    def cleanup(self) -> None:
        self.prepared.close()
