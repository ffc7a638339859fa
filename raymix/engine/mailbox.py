"""A tiny mailbox through which the driver talks to long-lived training workers.

Ray Train runs one training function per worker; raymix's fixed-effect function never returns
between coordinate-descent passes: it keeps its shard resident and waits here for commands.

The protocol survives a worker-group restart (Ray Train's ``FailureConfig``): there is one
*current* command; a worker asks for the first command it has not done yet, so a restarted
group simply re-runs the current one. Replies are keyed by command, by the worker group's
token (a number all ranks of one group agree on) and by rank; a command is answered once one
group has replied from every rank. Rank 0 also saves its optimizer progress here, so that a
restarted group resumes the fit from the last saved iterate rather than from scratch.

:class:`Mailbox` is plain, thread-safe Python. A worker group reaches it as a threaded Ray
actor (:func:`open_mailbox` with ``remote=True``); Ray Train's in-process mode (one worker
in the driver) uses the object itself, with no actor process to start. Both sides hold a
:class:`MailboxClient` and never need to know which.
"""

from __future__ import annotations

import threading
import time


class Mailbox:
    def __init__(self):
        self.command: dict | None = None
        self.changed = threading.Condition()
        self.replies: dict = {}  # command id -> {group token -> {rank: payload}}
        self.worlds: dict = {}  # (command id, token) -> world size
        self.progress: dict = {}  # command id -> latest saved iterate
        self.groups: set = set()  # tokens of every worker group that has loaded

    def post(self, command: dict) -> None:
        with self.changed:
            self.command = command
            self.changed.notify_all()

    def next(self, done_id):
        """The current command if it is not ``done_id``; waits for one otherwise."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.command is not None and self.command["id"] != done_id
            )
            return self.command

    def reply(self, command_id, token: int, rank: int, world: int, payload) -> None:
        with self.changed:
            if command_id == "load":
                self.groups.add(token)
            self.replies.setdefault(command_id, {}).setdefault(token, {})[rank] = payload
            self.worlds[(command_id, token)] = world
            self.changed.notify_all()

    def _complete(self, command_id):
        for token, ranks in self.replies.get(command_id, {}).items():
            if len(ranks) == self.worlds[(command_id, token)]:
                return [ranks[r] for r in range(len(ranks))]
        return None

    def collect(self, command_id, timeout: float):
        """Every rank's reply of one worker group, ordered by rank, or None on time-out."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (done := self._complete(command_id)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return done

    def save_progress(self, command_id, iterate) -> None:
        with self.changed:
            self.progress[command_id] = iterate

    def saved_progress(self, command_id):
        with self.changed:
            return self.progress.get(command_id)

    def restarts(self) -> int:
        """How many times the worker group was started again after the first."""
        with self.changed:
            return max(len(self.groups) - 1, 0)


class MailboxClient:
    """Calls on a :class:`Mailbox`, in this process or in an actor (picklable then)."""

    def __init__(self, target):
        self.target = target

    @property
    def local(self) -> bool:
        return isinstance(self.target, Mailbox)

    def call(self, method: str, *args):
        """``mailbox.method(*args)``, waiting for the answer."""
        if self.local:
            return getattr(self.target, method)(*args)
        import ray

        return ray.get(getattr(self.target, method).remote(*args))

    def send(self, method: str, *args) -> None:
        """``mailbox.method(*args)`` without waiting (in order with later calls)."""
        if self.local:
            getattr(self.target, method)(*args)
        else:
            getattr(self.target, method).remote(*args)


def open_mailbox(remote: bool) -> MailboxClient:
    """A new mailbox: a threaded actor (``remote``, for a worker group) or a local object."""
    if not remote:
        return MailboxClient(Mailbox())
    import ray

    actor = ray.remote(num_cpus=0, max_concurrency=64)(Mailbox)
    return MailboxClient(actor.remote())
