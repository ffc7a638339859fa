"""The deep workers' command channel: one async actor, one queue of commands per rank.

The driver posts a command to every rank and collects one reply per rank; workers block in
``next`` between coordinate-descent passes, holding their data and network. (The same
pattern as the LR fixed effect's mailbox, kept separate so that each can evolve: the deep
workers do not restart a failed worker group yet.)
"""

from __future__ import annotations

import asyncio

import ray


@ray.remote(num_cpus=0, max_concurrency=64)
class DeepMailbox:
    def __init__(self, world_size: int):
        self.world_size = world_size
        self.commands = [asyncio.Queue() for _ in range(world_size)]
        self.replies: asyncio.Queue = asyncio.Queue()

    async def post(self, command) -> None:
        for queue in self.commands:
            await queue.put(command)

    async def next(self, rank: int):
        return await self.commands[rank].get()

    async def reply(self, rank: int, payload) -> None:
        await self.replies.put((rank, payload))

    async def collect(self, timeout: float):
        """All ranks' replies to the last command, ordered by rank, or None on time-out."""
        replies = {}
        try:
            while len(replies) < self.world_size:
                rank, payload = await asyncio.wait_for(self.replies.get(), timeout)
                replies[rank] = payload
        except TimeoutError:
            for rank, payload in replies.items():  # keep what arrived for the next call
                await self.replies.put((rank, payload))
            return None
        return [replies[rank] for rank in range(self.world_size)]
