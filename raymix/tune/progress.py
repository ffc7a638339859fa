"""A search's progress: one line per finished trial, and a test's planned interrupt (no
other Tune callback state: Tune pickles its callbacks into the experiment)."""

from __future__ import annotations

import os

from ray.tune import Callback

# Where the progress callback prints and when it interrupts the search: set by every call of
# search(), not pickled with the callback into Tune's experiment state.
SESSION: dict = {"say": lambda message: None, "stop_after": None, "completed": 0}


class Progress(Callback):
    """One line per finished trial; after ``stop_after`` trials in this session, interrupt
    the search as Ctrl+C does (Tune saves its state and ends; ``resume`` continues it)."""

    def __init__(self, metric: str, total: int):
        self.metric, self.total, self.session_done = metric, total, 0

    def say(self, message: str) -> None:
        SESSION["say"](message)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.session_done += 1
        SESSION["completed"] += 1
        done = 1 + sum(1 for t in trials if t.status == "TERMINATED" and t is not trial)
        result = trial.last_result or {}
        value = result.get(self.metric)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.config.items())
        where = "reused data" if result.get("reused_data") else "loaded data"
        self.say(
            f"trial {done}/{self.total}: {self.metric}={_short(value)} after "
            f"{result.get('passes_run', 0)} pass(es), {where}: {shown}"
        )
        stop_after = SESSION["stop_after"]
        if stop_after is not None and self.session_done == stop_after:
            _interrupt(self.say)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.say(f"trial {trial.trial_id} failed: {trial.error_file}")


def _interrupt(say) -> None:
    """Send this process the signal Tune's own handler turns into a saved, resumable stop."""
    import signal

    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
        say("cannot interrupt the search here (Tune's signal handler is not installed)")
        return
    say("interrupting the search")
    os.kill(os.getpid(), signal.SIGUSR1)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
