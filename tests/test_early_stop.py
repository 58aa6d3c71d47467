"""Early-stopped judging: replayed full panels must give the same winner with fewer judge calls."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Sequence

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.chat import Message, SamplingParams
from hadron_hf.core.borda import CANDIDATES, RULES, borda_scores, borda_winner
from hadron_hf.core.tournament import RoleModels, Round, TournamentSettings, run_tournament
from hadron_hf.errors import ServerError
from hadron_hf.testing import FakeOpenAIServer, Reply, ScriptedChatModel, role_of

TASK: list[Message] = [{"role": "user", "content": "Explain TCP slow start."}]
_CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)
_TEXTS = {"A": "draft-text", "B": "B-text", "AB": "AB-text"}
FAILED = "failed"  # a recorded seat whose call failed for good
Seat = tuple[str, ...] | None | str  # a ranking of candidates (best first), None (unparseable) or FAILED
RANKINGS = list(itertools.permutations(CANDIDATES))


def writer() -> ScriptedChatModel:
    """Teacher, critic, author and synthesizer with fixed texts (the critic never says NO FLAWS)."""
    texts = {"teacher": _TEXTS["A"], "critic": "1. \"vague\" wording.", "author_b": _TEXTS["B"],
             "synthesizer": _TEXTS["AB"]}
    return ScriptedChatModel(default=lambda messages, params: texts[role_of(messages)], model="writer")


def ranked(seat: tuple[str, ...]) -> Callable[[list[Message], SamplingParams], str]:
    """A judge's reply ranking the candidates as ``seat`` does, in whatever labels it is shown."""

    def reply(messages: list[Message], params: SamplingParams) -> str:
        label = {text: lab for lab, text in _CANDIDATE.findall(messages[-1]["content"])}
        return "RANKING: " + " > ".join(label[_TEXTS[c]] for c in seat)

    return reply


def seat_reply(seat: Seat) -> Reply:
    """What a recorded seat answers: its ranking, a reply naming none, or a failed call."""
    if isinstance(seat, tuple):
        return ranked(seat)
    return "They are all fine." if seat is None else ServerError("recorded failure")


def recorded_panel(seats: Sequence[Seat], reasks: Sequence[Seat] = ()) -> ScriptedChatModel:
    """Judges replaying a recorded panel: seat ``j`` answers ``seats[j]`` in whatever labels it is shown.

    Seats are taken in call order; ``asyncio.gather`` starts a wave's calls in seat order. Calls past the
    panel are re-asks of the missing seats, answered from ``reasks`` in order (unparseable when it runs out).
    """
    return ScriptedChatModel([seat_reply(s) for s in [*seats, *reasks]], default=seat_reply(None), model="panel")


def seeds(model: ScriptedChatModel) -> list[int | None]:
    """The seed of each call ``model`` got, in call order."""
    return [params.seed for _, params in model.calls]


async def replay(panel: Sequence[Seat], variant: str, early: bool, seed: int) -> tuple[Round, ScriptedChatModel]:
    """Play one round where judge seat ``j`` answers ``panel[j]``."""
    judges = recorded_panel(panel)
    write = writer()
    models = RoleModels(write, write, write, write, (judges,))
    settings = TournamentSettings(variant=variant, judges=len(panel), max_iterations=1,  # type: ignore[arg-type]
                                  early_stop_judging=early)
    result = await run_tournament(TASK, models, settings, random.Random(seed))
    return result.rounds[0], judges


def random_panel(rng: random.Random, judges: int, consensus: bool) -> list[Seat]:
    """A panel with a random share of unparseable and failed seats; ``consensus`` judges mostly agree."""
    bad = rng.choice([0.0, 0.0, 0.1, 0.3, 0.6])
    favourite = rng.choice(RANKINGS)
    seats: list[Seat] = []
    for _ in range(judges):
        if rng.random() < bad:
            seats.append(FAILED if rng.random() < 0.2 else None)
        else:
            seats.append(favourite if consensus and rng.random() < 0.7 else rng.choice(RANKINGS))
    return seats


def outcome(seats: Sequence[Seat], judges: int, variant: str) -> tuple[str, bool, tuple[int, ...]]:
    """The full-panel (winner, fail_safe, re-asked seats) straight from the rules, independent of the
    tournament code. Short of a majority quorum the missing seats are re-asked (never after a hadron
    fail-safe); a recorded panel has nothing new to say, so such a round stays undecided and A stays."""
    counted = [s for s in seats if isinstance(s, tuple)]
    if variant == "hadron" and len(counted) <= judges / 2:
        return "A", True, ()
    if len(counted) < judges // 2 + 1:
        return "A", False, tuple(i for i, s in enumerate(seats) if not isinstance(s, tuple))
    return borda_winner(borda_scores(counted, RULES[variant]), RULES[variant]), False, ()


def settled(prefix: Sequence[Seat], judges: int, variant: str) -> bool:
    """Brute force: no way the remaining seats could vote changes the outcome (extremes tried first)."""
    rest, options = judges - len(prefix), [*RANKINGS, None]
    first = outcome([*prefix, *[None] * rest], judges, variant)
    tries = itertools.chain(([o] * rest for o in options), itertools.product(options, repeat=rest))
    return all(outcome([*prefix, *more], judges, variant) == first for more in tries)


async def check_same_outcome(panel: Sequence[Seat], variant: str, seed: int) -> tuple[int, int]:
    """Assert early stopping keeps the full panel's outcome and labels; return (calls made, seats)."""
    full, everyone = await replay(panel, variant, False, seed)
    cut, judges = await replay(panel, variant, True, seed)
    assert (cut.winner, cut.fail_safe, cut.decisive, cut.undecided) == (
        full.winner, full.fail_safe, full.decisive, full.undecided), panel
    called = len(cut.votes) - cut.reasked
    assert cut.votes[:called] == full.votes[:called], "the judges called saw exactly what the full panel saw"
    assert cut.votes[called:] == full.votes[len(panel):], "the same re-asks"
    assert cut.votes_skipped == len(panel) - called and full.votes_skipped == 0
    assert seeds(judges) == seeds(everyone)[:called] + seeds(everyone)[len(panel):], "the same call seeds"
    reasked = tuple(v.judge for v in full.votes[len(panel):])
    assert (full.winner, full.fail_safe, reasked) == outcome(panel, len(panel), variant)
    assert full.undecided == (reasked != ())
    # It stops at the first prefix whose outcome nothing can change: never too early, never a wasted call.
    assert all(not settled(panel[:k], len(panel), variant) for k in range(called))
    assert called == len(panel) or settled(panel[:called], len(panel), variant)
    return called, len(panel)


def saving(made: list[tuple[int, int]]) -> float:
    return 1 - sum(c for c, _ in made) / sum(n for _, n in made)


@pytest.mark.parametrize("variant", ["paper", "hadron"])
async def test_every_three_judge_panel_keeps_its_winner(variant: str) -> None:
    seats: list[Seat] = [*RANKINGS, None, FAILED]
    made = [await check_same_outcome(panel, variant, seed)
            for seed, panel in enumerate(itertools.product(seats, repeat=3))]
    assert len(made) == 8**3
    assert 0 < saving(made) < 1


@pytest.mark.parametrize("judges", [3, 5, 7], ids=["3-judges", "5-judges", "7-judges"])
@pytest.mark.parametrize("variant", ["paper", "hadron"])
async def test_replayed_random_panels_keep_their_winner(variant: str, judges: int) -> None:
    rng = random.Random(f"{variant}-{judges}")
    uniform = [await check_same_outcome(random_panel(rng, judges, False), variant, i) for i in range(150)]
    agreeing = [await check_same_outcome(random_panel(rng, judges, True), variant, i) for i in range(150)]
    assert saving(agreeing) > saving(uniform) >= 0
    assert saving(agreeing) > 0.05


@pytest.mark.parametrize("variant", ["paper", "hadron"])
async def test_unanimous_majority_skips_the_rest(variant: str) -> None:
    cut, judges = await replay([("A", "B", "AB")] * 7, variant, True, seed=3)
    # After five 3/2/1 (or 2/1/0) ballots A leads B by 5 (or 5) points; two more can close only 4.
    assert len(cut.votes) == 5 and cut.votes_skipped == 2 and cut.winner == "A"
    assert len(seeds(judges)) == 5


async def test_hadron_certain_fail_safe_stops_and_open_fail_safe_does_not() -> None:
    cut, _ = await replay([None, FAILED, ("B", "AB", "A")], "hadron", True, seed=0)
    assert cut.fail_safe and cut.winner == "A" and cut.votes_skipped == 1
    # Two of four parse in the first wave: the fail-safe is open, so judging goes on.
    panel: list[Seat] = [("B", "AB", "A"), None, ("B", "AB", "A"), ("B", "A", "AB")]
    for seed in range(10):
        cut, _ = await replay(panel, "hadron", True, seed)
        full, _ = await replay(panel, "hadron", False, seed)
        assert (cut.winner, cut.fail_safe) == (full.winner, full.fail_safe) == ("B", False)


async def test_paper_all_unparseable_never_stops_early() -> None:
    cut, _ = await replay([None] * 5, "paper", True, seed=0)
    assert cut.votes_skipped == 0 and cut.winner == "A" and not cut.decisive
    assert cut.undecided and cut.reasked == 5 and cut.quorum == 3


def test_default_off_and_trace_column_through_map(server: FakeOpenAIServer, cache_dir: str) -> None:
    def draft_first(role: str, messages: list[dict[str, str]], body: dict[str, object]) -> str | None:
        if role != "judge":
            return None
        shown = _CANDIDATE.findall(messages[-1]["content"])
        labels = sorted(shown, key=lambda s: not s[1].startswith("teacher answer"))
        return "RANKING: " + " > ".join(label for label, _ in labels)

    server.responder = draft_first
    ds = Dataset.from_dict({"prompt": [f"Question {i}?" for i in range(4)]})
    base = AutoReasonConfig(model=ModelConfig(base_url=server.url, model="m"), judges=3, cache_dir=cache_dir)
    assert base.early_stop_judging is False and base.settings().early_stop_judging is False
    for early, votes, skipped in [(False, 3, 0), (True, 2, 1)]:
        cfg = base.model_copy(update={"early_stop_judging": early})
        out = ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg})
        assert out.features["autoreason_trace"]["rounds"].feature["votes_skipped"].dtype == "int32"
        for row in out:
            assert row["autoreason_status"] == "ok" and row["refined"] == row["draft"]
            rounds = row["autoreason_trace"]["rounds"]
            assert [(len(r["votes"]), r["votes_skipped"]) for r in rounds] == [(votes, skipped)] * 2
