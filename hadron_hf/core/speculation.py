"""Speculative critique: the next round's critic, started while this round's judges vote.

The next round critiques this round's winner, which the judges are still choosing. A ``Lookahead``
starts that critique early on the likely winners (the incumbent ``A``, or every candidate): each one is
exactly the request the next round would send (same messages, same seed; ``speculative`` is metadata the
request cache ignores), so keeping the winner's changes no result, and a resumed run replays it from the
cache.

The others are discarded, not cancelled: they run to completion and are reported as speculative calls.
A hosted API bills a request it has started whether or not the client waits for the answer, so
cancelling would save nothing there while hiding what was paid; and a finished call is in the request
cache, so a resumed run replays the same calls and sends none. What keeps the waste down is elsewhere:
only candidates whose critique can still be needed are speculated, and a speculative call waits behind
every normal one for a slot (``engine.endpoint.AdaptiveLimit``), so it never delays a row's critical path.

Pure async like the tournament: no I/O, clocks or globals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams


@dataclass
class _Started:
    candidate: str
    text: str
    speculative: bool
    task: asyncio.Task[Completion]


class Lookahead:
    """The next round's critiques of one round's candidates, started before the round's winner is known.

    Args:
        critic: the critic model.
        messages_for: the critic's messages for a candidate's text.
        params: the next round's critic sampling, seed included, exactly as the next round would send it.
        candidates: the candidates to critique while the judges vote (``("A",)``, or all three).
        final: a winner whose win ends the tournament (the incumbent when its win would converge), so
            its critique is never needed; ``None``: every winner goes on to another round.
    """

    def __init__(self, critic: ChatModel, messages_for: Callable[[str], list[Message]], params: SamplingParams,
                 candidates: Sequence[str], final: str | None = None) -> None:
        self.critic = critic
        self.messages_for = messages_for
        self.params = params
        self.candidates = tuple(c for c in candidates if c != final)
        self.final = final
        self._texts: dict[str, str] = {}
        self._started: list[_Started] = []
        self._discarded: list[_Started] = []
        self._kept: list[_Started] = []

    def speculate(self, texts: Mapping[str, str]) -> None:
        """Critique those of ``texts``'s candidates that may win now, at low priority.

        Called with ``A`` alone as the round starts (the incumbent is known before anything else: a
        hadron round whose critic finds no flaws is an ``A`` win with no vote at all), then with every
        candidate as the judges start voting.
        """
        self._texts.update(texts)
        for candidate in self.candidates:
            if candidate in texts:
                self._start(candidate, texts[candidate], speculative=True)

    def lock(self, winner: str) -> None:
        """The winner is known before the last votes: start its critique now if it was not speculated."""
        if winner != self.final and winner in self._texts:
            self._start(winner, self._texts[winner], speculative=False)

    def keep(self, text: str | None) -> tuple[asyncio.Task[Completion] | None, bool]:
        """The round is over: keep the critique of ``text`` (the next incumbent) and discard the others.

        Args:
            text: the next round's incumbent, or ``None`` when there is no next round.

        Returns:
            The kept critique (``None`` when it was never started: the next round asks for it as usual),
            and whether it was started speculatively.
        """
        kept = next((s for s in self._started if s.text == text), None) if text is not None else None
        self._discarded.extend(s for s in self._started if s is not kept)
        self._kept.extend([kept] if kept else [])
        self._started = []
        return (kept.task, kept.speculative) if kept else (None, False)

    async def discarded(self) -> list[tuple[str, Completion]]:
        """Wait for the discarded critiques; those that answered, in the order they started.

        A failed discarded call is dropped: nothing depends on it (an endpoint that is down stops the
        calls that matter on their own).
        """
        done = await asyncio.gather(*(s.task for s in self._discarded), return_exceptions=True)
        return [(s.candidate, d) for s, d in zip(self._discarded, done, strict=True) if isinstance(d, Completion)]

    async def cancel(self) -> None:
        """Cancel every critique still running (the row failed) and wait until they have stopped."""
        every = (*self._started, *self._discarded, *self._kept)
        tasks = [s.task for s in every if not s.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in every:
            if s.task.done() and not s.task.cancelled():
                s.task.exception()  # retrieved, so asyncio does not log it as lost

    def _start(self, candidate: str, text: str, speculative: bool) -> None:
        if any(s.text == text for s in self._started):
            return  # B or AB may repeat another candidate word for word: one critique serves both
        params = replace(self.params, speculative=speculative)
        task = asyncio.ensure_future(self.critic.chat(self.messages_for(text), params))
        self._started.append(_Started(candidate, text, speculative, task))
