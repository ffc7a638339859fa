"""A tiny async actor through which the driver talks to long-lived training workers.

Ray Train runs one training function per worker; raymix's fixed-effect function never returns
between coordinate-descent passes: it keeps its shard resident and waits here for commands.

The protocol survives a worker-group restart (Ray Train's ``FailureConfig``): there is one
*current* command; a worker asks for the first command it has not done yet, so a restarted
group simply re-runs the current one. Replies are keyed by command, by the worker group's
token (a number all ranks of one group agree on) and by rank; a command is answered once one
group has replied from every rank. Rank 0 also saves its optimizer progress here, so that a
restarted group resumes the fit from the last saved iterate rather than from scratch.
"""

from __future__ import annotations

import asyncio

import ray


@ray.remote(num_cpus=0, max_concurrency=64)
class Mailbox:
    def __init__(self):
        self.command: dict | None = None
        self.changed = asyncio.Condition()
        self.replies: dict = {}  # command id -> {group token -> {rank: payload}}
        self.worlds: dict = {}  # (command id, token) -> world size
        self.progress: dict = {}  # command id -> latest saved iterate
        self.groups: set = set()  # tokens of every worker group that has loaded

    async def post(self, command: dict) -> None:
        async with self.changed:
            self.command = command
            self.changed.notify_all()

    async def next(self, done_id):
        """The current command if it is not ``done_id``; waits for one otherwise."""
        async with self.changed:
            await self.changed.wait_for(
                lambda: self.command is not None and self.command["id"] != done_id
            )
            return self.command

    async def reply(self, command_id, token: int, rank: int, world: int, payload) -> None:
        async with self.changed:
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

    async def collect(self, command_id, timeout: float):
        """Every rank's reply of one worker group, ordered by rank, or None on time-out."""
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self._complete(command_id) is not None), timeout
                )
            except TimeoutError:
                return None
            return self._complete(command_id)

    async def save_progress(self, command_id, iterate) -> None:
        self.progress[command_id] = iterate

    async def saved_progress(self, command_id):
        return self.progress.get(command_id)

    async def restarts(self) -> int:
        """How many times the worker group was started again after the first."""
        return max(len(self.groups) - 1, 0)
