"""A concurrency gate with two priorities: speculative calls wait behind every normal one.

``ResilientChatModel`` takes one slot of an endpoint's ``max_concurrency`` per call. A speculative call
(``SamplingParams.speculative``: the next round's critique started while the judges vote) may turn out
useless, so when the endpoint is saturated it must never delay a call that a row is waiting on: a freed
slot goes to the longest-waiting normal call, and only when none waits to the longest-waiting
speculative one. A speculative call already holding a slot keeps it (it is not pre-empted).

Slots are handed over directly on release, so a call arriving while others wait never jumps the queue.

Example:
    >>> gate = PriorityGate(2)
    >>> async with gate.slot(speculative=True):  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class PriorityGate:
    """At most ``slots`` holders at once; normal waiters are served before speculative ones, each FIFO.

    Args:
        slots: how many holders at once (at least 1).
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a PriorityGate needs at least one slot, got {slots}")
        self.slots = slots
        self._free = slots
        # Index 0: normal waiters, 1: speculative ones. Invariant: no live waiter while a slot is free.
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    def __repr__(self) -> str:
        return f"PriorityGate(slots={self.slots}, in_use={self.in_use}, waiting={self.waiting})"

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self.slots - self._free

    @property
    def waiting(self) -> tuple[int, int]:
        """``(normal, speculative)`` callers waiting for a slot."""
        return (sum(not f.done() for f in self._queues[0]), sum(not f.done() for f in self._queues[1]))

    async def acquire(self, speculative: bool = False) -> None:
        """Wait for a slot: after every earlier waiter of the same priority, and, when speculative, after
        every normal waiter (including those arriving later)."""
        if self._free > 0:
            self._free -= 1
            return
        ticket = asyncio.get_running_loop().create_future()
        self._queues[speculative].append(ticket)
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self.release()  # the slot was handed over just as this waiter gave up: pass it on
            else:
                ticket.cancel()
            raise

    def release(self) -> None:
        """Give a slot back: to the first normal waiter, else the first speculative one, else free it."""
        for queue in self._queues:
            while queue:
                ticket = queue.popleft()
                if not ticket.done():
                    ticket.set_result(None)
                    return
        if self._free >= self.slots:
            raise RuntimeError("PriorityGate released more often than acquired")
        self._free += 1

    def slot(self, speculative: bool = False) -> _Slot:
        """``async with gate.slot(speculative):`` holds one slot for the block."""
        return _Slot(self, speculative)


class _Slot:
    def __init__(self, gate: PriorityGate, speculative: bool) -> None:
        self._gate = gate
        self._speculative = speculative

    async def __aenter__(self) -> None:
        await self._gate.acquire(self._speculative)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._gate.release()
