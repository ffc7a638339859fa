"""A group of long-lived workers on Ray, driven through a mailbox: both sides of the protocol.

A coordinate whose rows live in a worker group (the fixed effect on Ray Train, the deep
coordinate on Ray Train or Horovod) holds a :class:`WorkerService`. Its ``start`` opens the
mailbox (:mod:`raymix.engine.mailbox`: an actor for a group of workers, the object itself
when the one worker runs in this process) and runs the group in a background thread
(the subclass's: a Ray Train trainer's ``fit``, a Horovod executor's run);
``loaded`` waits for every worker's :class:`~raymix.coordinates.base.WorkerRows`,
``request`` posts a command and collects one reply per rank, ``stop`` ends the group.

Each worker, once its shard is resident, replies to ``LOAD`` with its rows and then runs
:func:`serve`: the first command it has not done yet, its reply, the next, until
:class:`~raymix.engine.mailbox.Stop`. A group restarted after a failure (Ray Train's
``FailureConfig``) loads again and re-runs the current command; the driver sees the replies
of one complete group, as if nothing had happened, and counts the restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from raymix.engine.mailbox import LOAD, STOP, CommandId, MailboxClient, Member, Posted, Stop
from raymix.errors import FitError, RaymixError

POLL_SECONDS = 2.0


def group_token(sum_over_group: Callable[[np.ndarray], np.ndarray]) -> int:
    """A number every rank of this worker group agrees on and another group draws anew
    (``sum_over_group`` is the group's all-reduce): tells restarted groups apart."""
    draw = float(np.random.default_rng().integers(1 << 40))
    return int(sum_over_group(np.array([draw]))[0])


def serve(mailbox: MailboxClient, member: Member, handle: Callable[[Posted], Any]) -> None:
    """A worker's loop after its ``LOAD`` reply: answer every command until ``Stop``.

    ``handle(posted)`` returns the reply; a :class:`~raymix.errors.RaymixError` it raises is
    the reply instead (raised on the driver).
    """
    done: CommandId = LOAD
    while True:
        posted: Posted = mailbox.call("next", done)
        if isinstance(posted.command, Stop):
            return
        try:
            reply = handle(posted)
        except RaymixError as exc:
            reply = exc
        mailbox.call("reply", posted.id, member, reply)
        done = posted.id


class WorkerService:
    """Driver side: runs a worker group in a background thread and exchanges commands with it.

    A subclass starts its group with :meth:`open` and names what it trains in ``what`` (for
    the message when the group stops unasked).
    """

    what = "worker"

    def __init__(self) -> None:
        self.name = ""
        self.mailbox: MailboxClient | None = None
        self.last_id = 0  # the id of the last command posted
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def open(self, name: str, remote: bool, run_group: Callable[[], None]) -> None:
        """Open the mailbox (an actor if ``remote``) and run ``run_group`` in a thread: it
        starts the workers and returns when they end."""
        from raymix.engine.mailbox import open_mailbox

        self.name = name
        self.mailbox = open_mailbox(remote)
        self._thread = threading.Thread(
            target=self._run, args=(run_group,), name=f"raymix-{self.what}-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, run_group: Callable[[], None]) -> None:
        try:
            run_group()
        except BaseException as exc:  # surfaced by the next collect
            self._error = exc

    def share(self, value: Any) -> Any:
        """``value`` in Ray's object store, for the workers to read (once for every rank)."""
        import ray

        return ray.put(value)

    def loaded(self) -> list:
        """Every worker's rows (of the first worker group to finish loading)."""
        return self._collect(LOAD)

    def request(self, command: Any) -> list:
        """Post ``command`` and return every rank's reply (re-run by a restarted group)."""
        self.last_id += 1
        self._mailbox().call("post", Posted(self.last_id, command))
        return self._collect(self.last_id)

    def restarts(self) -> int:
        """How many times the worker group was started again after the first."""
        return self._mailbox().call("restarts")

    def _mailbox(self) -> MailboxClient:
        if self.mailbox is None:
            raise RuntimeError(f"the {self.what} workers of '{self.name}' are not started")
        return self.mailbox

    def _collect(self, command_id: CommandId) -> list:
        mailbox = self._mailbox()
        while True:
            replies = mailbox.call("collect", command_id, POLL_SECONDS)
            if replies is not None:
                break
            if self._error is not None or self._thread is None or not self._thread.is_alive():
                if isinstance(self._error, RaymixError):
                    raise self._error
                raise FitError(
                    f"{self.what} training stopped: {self._error!r}", coordinate=self.name
                ) from self._error
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def stop(self) -> None:
        if self._thread is None or self.mailbox is None:
            return
        if self._thread.is_alive():
            self.mailbox.call("post", Posted(STOP, Stop()))
            self._thread.join(timeout=60)
        self._thread = None
