"""A blind judge panel: drawing seats and labels, asking judges, quorum and one re-ask.

Shared by the tournament (three candidates ``A``, ``B``, ``AB``) and ``evaluate`` (two or three methods).
Pure async over ``ChatModel``: randomness comes from the caller's seeded ``random.Random``, and calls go
through a ``send`` function the caller supplies (the tournament records them for its trace).

Labels are counterbalanced across the panel: one seeded order of the candidates, and its cyclic shifts
handed out in blocks (each block a Latin square: every candidate under every label exactly once), so a
judge that ranks by position alone gives every candidate the same points at a panel size divisible by
the number of candidates. Seats left over after the last whole block get distinct shifts at random.

Example:
    >>> seats = draw_seats(("A", "B", "AB"), 6, (judge,), random.Random(0))  # doctest: +SKIP
    >>> outcome = await collect_votes(seats, judge_caller(...), quorum=4, rng=rng)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.core import prompts
from hadron_hf.core.borda import parse_ranking, ranking_choices
from hadron_hf.errors import BackendError, FatalBackendError, RankingParseError

Send = Callable[[ChatModel, list[Message], SamplingParams], Awaitable[Completion]]
"""How a seat's call is made: ``(model, messages, params) -> Completion`` (the caller may record it)."""


@dataclass(frozen=True)
class Seat:
    """One place on a panel: who judges, which candidate sits behind each label, and the call's seed."""

    index: int
    shown: tuple[str, ...]
    model: ChatModel
    seed: int


@dataclass(frozen=True)
class Vote:
    """One judge's ballot. ``shown[i]`` is the candidate behind label ``X{i+1}``; ``ranking`` is best first.

    ``reask`` marks a second ask of a seat whose first vote did not count.
    """

    judge: int
    model: str
    shown: tuple[str, ...]
    raw: str
    ranking: tuple[str, ...]
    parsed: bool
    constrained: bool
    error: str | None = None
    reask: bool = False


@dataclass(frozen=True)
class PanelOutcome:
    """What a panel returned.

    Args:
        votes: the first asks in seat order, then the re-asks (``Vote.reask``) in seat order.
        skipped: seats early stopping never asked.
        reasked: seats asked a second time with fresh seeds.
        quorum: counted votes needed for a decision.
    """

    votes: tuple[Vote, ...]
    skipped: int
    reasked: int
    quorum: int

    @property
    def counted(self) -> list[tuple[str, ...]]:
        """The rankings of the votes that count."""
        return [v.ranking for v in self.votes if v.parsed]

    @property
    def reached(self) -> bool:
        """Whether the counted votes reach the quorum."""
        return len(self.counted) >= self.quorum


class EarlyStop(Protocol):
    """Early-stopped judging: how many seats to ask next, and whether the asked ones already settle it."""

    def wave(self, votes: Sequence[Vote], panel: int) -> int:
        """Seats to ask in the next wave (at least one)."""
        ...

    def settled(self, votes: Sequence[Vote], panel: int) -> bool:
        """Whether the seats still unasked can no longer change the outcome."""
        ...


def default_quorum(judges: int) -> int:
    """A strict majority of the panel: the counted votes a decision needs by default."""
    return judges // 2 + 1


def labels_for(n: int) -> tuple[str, ...]:
    """The neutral labels ``X1..Xn`` judges see."""
    return tuple(f"X{i + 1}" for i in range(n))


def balanced_orders(candidates: Sequence[str], seats: int, rng: random.Random) -> list[tuple[str, ...]]:
    """Label orders for ``seats`` judges, counterbalanced across the panel.

    One seeded order of ``candidates`` and its cyclic shifts: every whole block of ``len(candidates)``
    seats gets each shift once (in a seeded order), so in each block every candidate appears under every
    label exactly once. The remaining seats get distinct shifts drawn at random.

    Args:
        candidates: the candidates (two or more).
        seats: panel size.
        rng: the row's random source; the same state gives the same orders.

    Returns:
        ``seats`` tuples, each the candidates in label order.
    """
    n = len(candidates)
    base = tuple(rng.sample(list(candidates), n))
    shifts: list[int] = []
    for _ in range(seats // n):
        shifts.extend(rng.sample(range(n), n))
    shifts.extend(rng.sample(range(n), seats % n))
    return [base[s:] + base[:s] for s in shifts]


def draw_seats(candidates: Sequence[str], judges: int, pool: Sequence[ChatModel], rng: random.Random,
               pool_mode: Literal["round_robin", "random"] = "round_robin") -> list[Seat]:
    """Every seat of a panel, drawn up front so that early stopping never changes what an asked judge sees.

    Args:
        candidates: the candidate names.
        judges: panel size.
        pool: the judge models; seats take them round robin from a seeded offset, or at random.
        rng: the row's random source.
        pool_mode: ``"round_robin"`` or ``"random"``.
    """
    offset = rng.randrange(len(pool))
    orders = balanced_orders(candidates, judges, rng)
    seats = []
    for j, shown in enumerate(orders):
        model = pool[(offset + j) % len(pool)] if pool_mode == "round_robin" else rng.choice(list(pool))
        seats.append(Seat(j, shown, model, rng.getrandbits(31)))
    return seats


def judge_caller(task: str, texts: Mapping[str, str], send: Send, *, reason_first: bool, temperature: float,
                 max_tokens: int, constrain: bool) -> Callable[[Seat], Awaitable[Vote]]:
    """A function asking one seat to rank ``texts`` and reading its vote.

    Args:
        task: the task text the judges see.
        texts: each candidate's text.
        send: makes the call.
        reason_first: judges reason before their ``RANKING:`` line (with ``constrain``, the constraint
            allows free text before the final line).
        temperature: judges' temperature.
        max_tokens: cap on a judge's reply.
        constrain: ask the backend to force a well-formed ranking line.

    Returns:
        ``ask(seat) -> Vote``. A failed call (other than ``FatalBackendError``) or an unreadable reply
        gives an uncounted vote with its error.
    """
    labels = labels_for(len(texts))
    choices = ranking_choices(labels) if constrain else None

    async def ask(seat: Seat) -> Vote:
        messages = prompts.judge_messages(task, [(labels[i], texts[c]) for i, c in enumerate(seat.shown)],
                                          reason_first=reason_first)
        params = SamplingParams(temperature, max_tokens, seat.seed, choices,
                                choices_after_text=reason_first and choices is not None)
        try:
            done = await send(seat.model, messages, params)
        except FatalBackendError:
            raise
        except BackendError as exc:
            return Vote(seat.index, "", seat.shown, "", (), False, False, f"{type(exc).__name__}: {exc}")
        try:
            ranked = parse_ranking(done.text, labels)
        except RankingParseError as exc:
            return Vote(seat.index, done.model, seat.shown, done.text, (), False, done.constrained, str(exc))
        ranking = tuple(seat.shown[labels.index(label)] for label in ranked)
        return Vote(seat.index, done.model, seat.shown, done.text, ranking, True, done.constrained)

    return ask


async def collect_votes(seats: Sequence[Seat], ask: Callable[[Seat], Awaitable[Vote]], *, quorum: int,
                        rng: random.Random, early_stop: EarlyStop | None = None,
                        may_reask: Callable[[Sequence[Vote]], bool] | None = None,
                        on_vote: Callable[[Sequence[Vote]], None] | None = None) -> PanelOutcome:
    """Ask the panel; when the counted votes fall short of ``quorum``, re-ask the missing seats once.

    Args:
        seats: the panel (see ``draw_seats``).
        ask: asks one seat (see ``judge_caller``).
        quorum: counted votes a decision needs.
        rng: the row's random source; the re-asks' fresh seeds come from it, after every first ask.
        early_stop: ask in waves and stop once the rest cannot change the outcome.
        may_reask: whether a short panel may be re-asked, given the first votes (the hadron variant's
            fail-safe says no). ``None``: always.
        on_vote: called as each first-ask vote arrives, with the first-ask votes in so far (within a
            wave in the order they arrived), e.g. to act on a winner locked before the last vote.

    Returns:
        Every vote, how many seats were skipped and re-asked, and the quorum.
    """
    votes: list[Vote] = []
    arrived: list[Vote] = []

    async def first(seat: Seat) -> Vote:
        vote = await ask(seat)
        if on_vote is not None:
            arrived.append(vote)
            on_vote(tuple(arrived))
        return vote

    while len(votes) < len(seats):
        size = early_stop.wave(votes, len(seats)) if early_stop else len(seats)
        wave = seats[len(votes) : len(votes) + size]
        votes.extend(await asyncio.gather(*(first(seat) for seat in wave)))
        if early_stop and early_stop.settled(votes, len(seats)):
            break
    skipped = len(seats) - len(votes)
    counted = sum(v.parsed for v in votes)
    if counted >= quorum or (may_reask is not None and not may_reask(votes)):
        return PanelOutcome(tuple(votes), skipped, 0, quorum)
    missing = [seat for seat, vote in zip(seats, votes, strict=False) if not vote.parsed]
    # Fresh seeds, all drawn before any re-ask runs, so the draw order never depends on timing.
    again = [replace(seat, seed=rng.getrandbits(31)) for seat in missing]
    second = await asyncio.gather(*(ask(seat) for seat in again))
    votes.extend(replace(v, reask=True) for v in second)
    return PanelOutcome(tuple(votes), skipped, len(again), quorum)
