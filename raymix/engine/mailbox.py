"""A tiny mailbox through which the driver talks to a group of long-lived workers.

Ray Train runs one training function per worker; raymix's worker functions (the fixed
effect's, the deep coordinate's) never return between coordinate-descent passes: they keep
their shard resident and wait here for commands.

The protocol survives a worker-group restart (Ray Train's ``FailureConfig``): there is one
*current* command; a worker asks for the first command it has not done yet, so a restarted
group simply re-runs the current one. Replies are keyed by command, by the worker group's
token (a number all ranks of one group agree on, see :class:`Member`) and by rank; a command
is answered once one group has replied from every rank. A worker may also log its progress
on the current command here as numbered entries (the fixed effect's rank 0 logs its L-BFGS
evaluations, :mod:`raymix.solvers.replay`), so that a restarted group retraces them rather
than computing them again.

:class:`Mailbox` is plain, thread-safe Python. A worker group reaches it as a threaded Ray
actor (:func:`open_mailbox` with ``remote=True``); Ray Train's in-process mode (one worker
in the driver) uses the object itself, with no actor process to start. Both sides hold a
:class:`MailboxClient` and never need to know which.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

#: the id of the command every worker answers first, once its shard is loaded
LOAD = "load"
#: the id of the stop command
STOP = "stop"

CommandId = int | str


@dataclass(frozen=True)
class Member:
    """One worker of a group: its rank, the group's size, and the group's token (a number all
    ranks of one group agree on, drawn anew by every group: it tells restarted groups apart)."""

    rank: int
    world: int
    token: int


@dataclass(frozen=True)
class Posted:
    """A command as the mailbox holds it: its id and what to do."""

    id: CommandId
    command: Any


@dataclass(frozen=True)
class Stop:
    """Tells the workers to leave their command loop."""


class Mailbox:
    """The current command, every group's replies, saved progress (module docstring)."""

    def __init__(self) -> None:
        self.current: Posted | None = None
        self.changed = threading.Condition()
        # command id -> {group token -> {rank: payload}}
        self.replies: dict[CommandId, dict[int, dict[int, Any]]] = {}
        self.worlds: dict[tuple[CommandId, int], int] = {}  # (command id, token) -> world size
        self.progress: dict[CommandId, dict[int, Any]] = {}  # command id -> {number: entry}
        self.groups: set[int] = set()  # tokens of every worker group that has loaded

    def post(self, posted: Posted) -> None:
        with self.changed:
            self.current = posted
            self.changed.notify_all()

    def next(self, done_id: CommandId) -> Posted:
        """The current command if it is not ``done_id``; waits for one otherwise."""
        with self.changed:
            while self.current is None or self.current.id == done_id:
                self.changed.wait()
            return self.current

    def reply(self, command_id: CommandId, member: Member, payload: Any) -> None:
        with self.changed:
            if command_id == LOAD:
                self.groups.add(member.token)
            group = self.replies.setdefault(command_id, {}).setdefault(member.token, {})
            group[member.rank] = payload
            self.worlds[(command_id, member.token)] = member.world
            self.changed.notify_all()

    def _complete(self, command_id: CommandId) -> list | None:
        for token, ranks in self.replies.get(command_id, {}).items():
            failed = [p for p in ranks.values() if isinstance(p, BaseException)]
            if failed:  # the others may wait for the failed rank in a collective: answer now
                return failed[:1]
            if len(ranks) == self.worlds[(command_id, token)]:
                return [ranks[r] for r in range(len(ranks))]
        return None

    def collect(self, command_id: CommandId, timeout: float) -> list | None:
        """Every rank's reply of one worker group, ordered by rank (or the first error a rank
        replied), or None on time-out."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (done := self._complete(command_id)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return done

    def save_progress(self, command_id: CommandId, start: int, entries: list) -> None:
        """Keep ``entries`` as numbers ``start``, ``start + 1``, ... (replacing older ones)."""
        with self.changed:
            saved = self.progress.setdefault(command_id, {})
            saved.update(zip(range(start, start + len(entries)), entries, strict=True))

    def saved_progress(self, command_id: CommandId) -> list:
        """The entries numbered 0, 1, ... up to the first gap."""
        with self.changed:
            saved = self.progress.get(command_id, {})
            out: list = []
            while len(out) in saved:
                out.append(saved[len(out)])
            return out

    def restarts(self) -> int:
        """How many times the worker group was started again after the first."""
        with self.changed:
            return max(len(self.groups) - 1, 0)


class MailboxClient:
    """Calls on a :class:`Mailbox`, in this process or in an actor (picklable then)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    @property
    def local(self) -> bool:
        return isinstance(self.target, Mailbox)

    def call(self, method: str, *args) -> Any:
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

    actor = ray.remote(Mailbox).options(num_cpus=0, max_concurrency=64)
    return MailboxClient(actor.remote())
