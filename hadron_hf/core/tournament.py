"""The AutoReason refinement tournament: pure async logic over ``ChatModel``.

No I/O, clocks, environment or globals here: models arrive as arguments and every random choice comes
from a ``random.Random`` seeded per row, so a run replays exactly (and a request cache can resume it).
Each round's critic seed is drawn one round ahead, at a fixed point, so that ``speculate`` can send the
next round's critique while the judges vote without changing any draw (see ``core.speculation``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.core import prompts
from hadron_hf.core.borda import CANDIDATES, LABELS, RULES, BordaRule, borda_scores, borda_winner
from hadron_hf.core.panel import PanelOutcome, Vote, collect_votes, default_quorum, draw_seats, judge_caller
from hadron_hf.core.settling import Waves, locked_winner
from hadron_hf.core.speculation import Lookahead

__all__ = ["CallRecord", "Preference", "RoleModels", "Round", "SpeculativeCall", "TournamentResult",
           "TournamentSettings", "Vote", "row_seed", "run_tournament"]

Variant = Literal["paper", "hadron"]
Quality = Literal["clean", "undecided", "fail_safe"]
Role = Literal["teacher", "critic", "author_b", "synthesizer", "judge"]
Speculate = Literal["off", "incumbent", "all"]


@dataclass(frozen=True)
class TournamentSettings:
    """Tournament knobs (the frozen inside of ``AutoReasonConfig``)."""

    variant: Variant = "paper"
    judges: int = 3
    converge_k: int = 2
    max_iterations: int = 10
    temperature: float = 0.7
    author_temperature: float = 0.8
    judge_temperature: float = 0.3
    max_tokens: int = 1024
    judge_max_tokens: int = 512
    system_prompt: str | None = None
    constrain_judges: bool = True
    judge_pool: Literal["round_robin", "random"] = "round_robin"
    early_stop_judging: bool = False
    judge_quorum: int | None = None
    speculate: Speculate = "off"

    @property
    def quorum(self) -> int:
        """Counted votes a round needs to be decided (``judge_quorum``, default a strict majority)."""
        return self.judge_quorum if self.judge_quorum is not None else default_quorum(self.judges)


@dataclass(frozen=True)
class RoleModels:
    """Which model plays each role; ``judges`` is a pool drawn from for every panel."""

    teacher: ChatModel
    critic: ChatModel
    author: ChatModel
    synthesizer: ChatModel
    judges: tuple[ChatModel, ...]

    @classmethod
    def single(cls, model: ChatModel) -> RoleModels:
        """One model for every role."""
        return cls(model, model, model, model, (model,))


@dataclass(frozen=True)
class Round:
    """One iteration of the tournament.

    ``votes`` lists the first asks in seat order, then any re-asks. ``undecided``: the counted votes
    stayed short of ``quorum`` even after re-asking the missing seats, so the incumbent stays without
    winning (``scores`` still sum the counted votes). ``fail_safe``: the hadron variant's rule fired (half
    the panel or fewer counted), an A win with zero scores. Neither yields a preference pair.
    """

    iteration: int
    a: str
    critique: str
    b: str | None
    ab: str | None
    no_flaws: bool
    merge_order: tuple[str, ...]
    votes: tuple[Vote, ...]
    scores: dict[str, int]
    winner: str
    fail_safe: bool
    votes_skipped: int = 0
    undecided: bool = False
    quorum: int = 0
    reasked: int = 0

    @property
    def decisive(self) -> bool:
        """Whether counted votes decided this round (not a no-flaws exit, a fail-safe or undecided)."""
        return not self.no_flaws and not self.fail_safe and not self.undecided and any(v.parsed for v in self.votes)

    def text_of(self, candidate: str) -> str:
        """The text of candidate ``A``, ``B`` or ``AB`` in this round."""
        return {"A": self.a, "B": self.b, "AB": self.ab}[candidate] or ""


@dataclass(frozen=True)
class CallRecord:
    """One model call made for a row, for the reasoning-trace and usage columns."""

    role: Role
    model: str
    iteration: int
    answer: str
    reasoning: str | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool


@dataclass(frozen=True)
class SpeculativeCall:
    """A next-round critique started while the judges voted, then discarded: another candidate won, or the
    tournament ended. ``candidate`` is the one it critiqued; ``call.iteration`` the round it was for."""

    candidate: str
    call: CallRecord


@dataclass(frozen=True)
class Preference:
    """The preference pair a row yields: the final winner against the weakest of its decisive round."""

    chosen: str
    rejected: str | None
    score_chosen: float | None
    score_rejected: float | None

    @property
    def margin(self) -> float | None:
        """``score_chosen - score_rejected`` where both are known."""
        if self.score_chosen is None or self.score_rejected is None:
            return None
        return self.score_chosen - self.score_rejected


@dataclass(frozen=True)
class TournamentResult:
    """Everything one row's tournament produced.

    ``calls`` are the calls the result rests on, the same with or without ``speculate`` (a kept
    speculative critique is one of them, counted in ``speculative_hits``); ``discarded`` are the extra
    speculative calls, paid for and thrown away.
    """

    variant: Variant
    draft: str
    refined: str
    winner_source: str
    converged: bool
    rounds: tuple[Round, ...]
    calls: tuple[CallRecord, ...]
    preference: Preference
    discarded: tuple[SpeculativeCall, ...] = ()
    speculative_hits: int = 0

    @property
    def quality(self) -> Quality:
        """How far the row's labels can be trusted.

        ``"fail_safe"``: some round was a hadron fail-safe (an A win no counted majority backs);
        ``"undecided"``: some judged round stayed short of quorum after its re-ask; ``"clean"``: every
        judged round was decided by a quorum of counted votes.
        """
        if any(r.fail_safe for r in self.rounds):
            return "fail_safe"
        if any(r.undecided for r in self.rounds):
            return "undecided"
        return "clean"


def row_seed(seed: int, content: str) -> int:
    """A 63-bit seed from the config seed and the row's content, independent of batch order."""
    digest = hashlib.sha256(f"{seed}\x00{content}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class _Row:
    models: RoleModels
    settings: TournamentSettings
    rng: random.Random
    # A slot per call in the order calls start, so concurrent calls are listed the same way every run.
    slots: list[CallRecord | None] = field(default_factory=list)
    lookaheads: list[tuple[int, Lookahead]] = field(default_factory=list)  # (the round it is for, lookahead)

    async def call(self, role: Role, iteration: int, model: ChatModel, messages: list[Message],
                   temperature: float, max_tokens: int, choices: tuple[str, ...] | None = None) -> Completion:
        params = SamplingParams(temperature, max_tokens, self.rng.getrandbits(31), choices)
        return await self.send(role, iteration, model, messages, params)

    async def send(self, role: Role, iteration: int, model: ChatModel, messages: list[Message],
                   params: SamplingParams) -> Completion:
        return await self.settle(role, iteration, model.chat(messages, params))

    async def settle(self, role: Role, iteration: int, call: Awaitable[Completion]) -> Completion:
        """Record ``call`` in the next slot: where it stands in the trace, whenever it was started."""
        slot = len(self.slots)
        self.slots.append(None)
        done = await call
        self.slots[slot] = CallRecord(role, done.model, iteration, done.text, done.reasoning,
                                      done.prompt_tokens, done.completion_tokens, done.cached)
        return done

    def calls(self) -> tuple[CallRecord, ...]:
        """The calls that completed, in the order they started."""
        return tuple(c for c in self.slots if c is not None)

    def lookahead(self, iteration: int, task: str, seed: int, streak: int) -> Lookahead | None:
        """What to critique for round ``iteration + 1`` while round ``iteration``'s judges vote, if anything."""
        s = self.settings
        if s.speculate == "off" or iteration >= s.max_iterations:
            return None
        hadron = s.variant == "hadron"
        ahead = Lookahead(self.models.critic, lambda text: prompts.critic_messages(task, text, hadron),
                          SamplingParams(s.temperature, s.max_tokens, seed),
                          ("A",) if s.speculate == "incumbent" else CANDIDATES,
                          final="A" if streak + 1 >= s.converge_k else None)
        self.lookaheads.append((iteration + 1, ahead))
        return ahead

    async def discarded(self) -> tuple[SpeculativeCall, ...]:
        """Every discarded speculative critique that answered, once it has, in the order they started."""
        out = []
        for iteration, ahead in self.lookaheads:
            for candidate, done in await ahead.discarded():
                out.append(SpeculativeCall(candidate, CallRecord(
                    "critic", done.model, iteration, done.text, done.reasoning, done.prompt_tokens,
                    done.completion_tokens, done.cached)))
        return tuple(out)


async def run_tournament(
    task: Sequence[Message], models: RoleModels, settings: TournamentSettings, rng: random.Random
) -> TournamentResult:
    """Refine one task through the AutoReason tournament.

    Args:
        task: the user's conversation (one or more messages, no system message needed).
        models: the model for each role.
        settings: variant, panel size, convergence, sampling and speculation settings.
        rng: this row's random source (see ``row_seed``); every label order and call seed comes from it.

    Returns:
        The draft, the refined answer, every round and call, and the preference pair. An undecided
        round keeps the incumbent but neither extends nor breaks its streak toward convergence. With
        ``speculate``, the same result, plus the discarded speculative calls.

    Raises:
        BackendError: a teacher, critic, author or synthesizer call failed for good. A failed judge
            call is a missing vote (the panel's quorum and re-ask handle it).
    """
    row = _Row(models, settings, rng)
    try:
        return await _run(row, task)
    except BaseException:
        await asyncio.gather(*(ahead.cancel() for _, ahead in row.lookaheads))
        raise


async def _run(row: _Row, task: Sequence[Message]) -> TournamentResult:
    settings, rule, text = row.settings, RULES[row.settings.variant], prompts.task_text(task)
    draft = (await row.call("teacher", 0, row.models.teacher, prompts.teacher_messages(task, settings.system_prompt),
                            settings.temperature, settings.max_tokens)).text
    incumbent, source, streak, converged = draft, "draft", 0, False
    rounds: list[Round] = []
    next_seed, ready, hits = row.rng.getrandbits(31), None, 0
    for iteration in range(1, settings.max_iterations + 1):
        # The next round's critic seed is drawn now, before anything of this round, in every mode.
        seed, next_seed = next_seed, row.rng.getrandbits(31)
        ahead = row.lookahead(iteration, text, next_seed, streak)
        rnd = await _play_round(row, iteration, text, incumbent, seed, ready, ahead)
        rounds.append(rnd)
        if rnd.undecided:
            pass  # the incumbent stays, but no vote said it should: no step toward convergence
        elif rnd.winner == "A":
            streak += 1
        else:
            incumbent, source, streak = rnd.text_of(rnd.winner), rnd.winner, 0
        converged = streak >= settings.converge_k
        if ahead is not None:
            ready, speculated = ahead.keep(None if converged else incumbent)
            hits += speculated
        if converged:
            break
    preference = _preference(rounds, draft, incumbent, rule)
    return TournamentResult(settings.variant, draft, incumbent, source, converged, tuple(rounds),
                            row.calls(), preference, await row.discarded(), hits)


async def _play_round(row: _Row, iteration: int, task: str, a: str, seed: int,
                      ready: Awaitable[Completion] | None, ahead: Lookahead | None) -> Round:
    """One round; ``ready``: its critique, already started by the previous round's lookahead."""
    s, m = row.settings, row.models
    hadron = s.variant == "hadron"
    if ahead is not None:
        ahead.speculate({"A": a})
    if ready is None:
        params = SamplingParams(s.temperature, s.max_tokens, seed)
        ready = m.critic.chat(prompts.critic_messages(task, a, hadron), params)
    critique = (await row.settle("critic", iteration, ready)).text
    if hadron and prompts.NO_FLAWS.lower() in critique.lower():
        return Round(iteration, a, critique, None, None, True, (), (), dict.fromkeys(CANDIDATES, 0), "A", False)
    merge_order: tuple[str, ...] = ()
    if hadron:
        done_b, done_ab = await asyncio.gather(
            row.call("author_b", iteration, m.author, prompts.author_messages(task, a, critique),
                     s.author_temperature, s.max_tokens),
            row.call("synthesizer", iteration, m.synthesizer, prompts.repair_messages(task, a, critique),
                     s.temperature, s.max_tokens),
        )
        b, ab = done_b.text, done_ab.text
    else:
        b = (await row.call("author_b", iteration, m.author, prompts.author_messages(task, a, critique),
                            s.author_temperature, s.max_tokens)).text
        merge_order = ("A", "B") if row.rng.random() < 0.5 else ("B", "A")
        texts = {"A": a, "B": b}
        versions = [(LABELS[i], texts[c]) for i, c in enumerate(merge_order)]
        ab = (await row.call("synthesizer", iteration, m.synthesizer, prompts.merge_messages(task, versions),
                             s.temperature, s.max_tokens)).text
    outcome = await _judge(row, iteration, task, {"A": a, "B": b, "AB": ab}, ahead)
    rule = RULES[s.variant]
    counted = outcome.counted
    fail_safe = _fail_safe(s, outcome.votes)
    undecided = not fail_safe and not outcome.reached
    scores = dict.fromkeys(CANDIDATES, 0) if fail_safe else borda_scores(counted, rule)
    winner = "A" if fail_safe or undecided else borda_winner(scores, rule)
    return Round(iteration, a, critique, b, ab, False, merge_order, outcome.votes, scores, winner, fail_safe,
                 outcome.skipped, undecided, outcome.quorum, outcome.reasked)


def _fail_safe(s: TournamentSettings, votes: Sequence[Vote]) -> bool:
    """Hadron's rule: half the panel or fewer counted on the first ask (it never re-asks)."""
    return s.variant == "hadron" and sum(v.parsed for v in votes if not v.reask) <= s.judges / 2


async def _judge(row: _Row, iteration: int, task: str, texts: dict[str, str],
                 ahead: Lookahead | None) -> PanelOutcome:
    """Ask the panel: every seat drawn up front, then waves, quorum and the one re-ask.

    With a lookahead, the next round's critiques start as the judges do, and the winner's as soon as
    the votes in lock it.
    """
    s = row.settings
    seats = draw_seats(CANDIDATES, s.judges, row.models.judges, row.rng, s.judge_pool)

    async def send(model: ChatModel, messages: list[Message], params: SamplingParams) -> Completion:
        return await row.send("judge", iteration, model, messages, params)

    def on_vote(votes: Sequence[Vote]) -> None:
        winner = locked_winner(votes, s.judges, s.variant, s.quorum)
        if ahead is not None and winner is not None:
            ahead.lock(winner)

    ask = judge_caller(task, texts, send, reason_first=s.variant == "paper", temperature=s.judge_temperature,
                       max_tokens=s.judge_max_tokens, constrain=s.constrain_judges)
    if ahead is not None:
        ahead.speculate(texts)
    return await collect_votes(seats, ask, quorum=s.quorum, rng=row.rng,
                               early_stop=Waves(s.variant, s.quorum) if s.early_stop_judging else None,
                               may_reask=lambda votes: not _fail_safe(s, votes),
                               on_vote=on_vote if ahead is not None else None)


def _preference(rounds: Sequence[Round], draft: str, refined: str, rule: BordaRule) -> Preference:
    decisive = [r for r in rounds if r.decisive]
    if not decisive:
        rejected = draft if draft != refined else None
        return Preference(refined, rejected, None, None)
    last = decisive[-1]
    # Weakest first: fewest points, ties against the candidate last in the tie order.
    ordered = sorted(CANDIDATES, key=lambda c: (last.scores[c], -rule.tie_order.index(c)))
    for candidate in ordered:
        if last.text_of(candidate) != refined:
            return Preference(refined, last.text_of(candidate), float(last.scores[last.winner]),
                              float(last.scores[candidate]))
    if draft != refined:
        return Preference(refined, draft, float(last.scores[last.winner]), None)
    return Preference(refined, None, float(last.scores[last.winner]), None)
