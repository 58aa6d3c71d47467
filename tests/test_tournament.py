import asyncio
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hadron_hf.chat import Message, SamplingParams
from hadron_hf.core import prompts
from hadron_hf.core.tournament import RoleModels, TournamentSettings, row_seed, run_tournament
from hadron_hf.errors import ServerError
from hadron_hf.testing import ScriptedChatModel, role_of

TASK: list[Message] = [{"role": "user", "content": "Explain TCP slow start."}]
TextReply = Callable[[list[Message], SamplingParams], str]  # a ScriptedChatModel reply that never fails
_CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)


def role_replies(critique: Callable[[int], str] = lambda n: f"1. \"vague\" wording, pass {n}.",
                 author: Callable[[int], str] = lambda n: f"B-text {n}",
                 synth: Callable[[int], str] = lambda n: f"AB-text {n}",
                 judge: Callable[[dict[str, str]], str] | None = None) -> TextReply:
    """Replies by role: a fixed draft, the ``n``-th call of a writing role gets ``critique(n)``/``author(n)``/
    ``synth(n)``, and judges rank by a key over the candidate texts they are shown."""
    seen: Counter[str] = Counter()

    def reply(messages: list[Message], params: SamplingParams) -> str:
        role = role_of(messages)
        seen[role] += 1
        if role == "teacher":
            return "draft-text"
        if role == "critic":
            return critique(seen[role])
        if role == "author_b":
            return author(seen[role])
        if role == "synthesizer":
            return synth(seen[role])
        shown = dict(_CANDIDATE.findall(messages[-1]["content"]))
        return judge(shown) if judge else "RANKING: X1 > X2 > X3"

    return reply


def role_fake(name: str = "fake", on_call: Callable[[list[Message], SamplingParams], Awaitable[None]] | None = None,
              **replies: Any) -> ScriptedChatModel:
    """A ``ScriptedChatModel`` answering by role (``role_replies(**replies)``) as ``name``, billing 10 + 5 tokens."""
    return ScriptedChatModel(default=role_replies(**replies), model=name, prompt_tokens=10, completion_tokens=5,
                             on_call=on_call)


def role_calls(fake: ScriptedChatModel, role: str) -> list[tuple[list[Message], SamplingParams]]:
    """The calls ``fake`` got from ``role``, in call order."""
    return fake.calls_by(role_of)[role]


def count(fake: ScriptedChatModel, role: str) -> int:
    return len(role_calls(fake, role))


def prefer(*fragments: str) -> Callable[[dict[str, str]], str]:
    """A judge that ranks candidates by which fragment their text starts with (earlier is better)."""

    def rank(shown: dict[str, str]) -> str:
        def key(label: str) -> int:
            return next((i for i, f in enumerate(fragments) if shown[label].startswith(f)), len(fragments))

        return "Reasoning.\nRANKING: " + " > ".join(sorted(shown, key=key))

    return rank


def settings(**kw: object) -> TournamentSettings:
    return TournamentSettings(**{"judges": 3, "max_iterations": 5, **kw})


async def play(fake: ScriptedChatModel, seed: int = 1, **kw: object):  # type: ignore[no-untyped-def]
    return await run_tournament(TASK, RoleModels.single(fake), settings(**kw), random.Random(seed))


async def test_paper_converges_when_incumbent_wins_k_rounds() -> None:
    fake = role_fake(judge=prefer("draft", "B-", "AB-"))
    result = await play(fake)
    assert result.converged and len(result.rounds) == 2
    assert result.refined == result.draft == "draft-text"
    assert result.winner_source == "draft"
    assert [r.winner for r in result.rounds] == ["A", "A"]
    assert result.rounds[0].scores == {"A": 9, "B": 6, "AB": 3}
    assert count(fake, "judge") == 6 and len(result.calls) == 1 + 2 * (3 + 3)
    assert result.preference.rejected == "AB-text 2"
    assert result.preference.margin == 6.0


async def test_paper_new_winner_resets_the_streak() -> None:
    fake = role_fake(judge=prefer("B-text 1", "draft", "AB-"))
    result = await play(fake)
    assert [r.winner for r in result.rounds] == ["B", "A", "A"]
    assert result.refined == "B-text 1" and result.winner_source == "B" and result.converged
    assert result.rounds[1].a == "B-text 1"
    assert result.preference.chosen == "B-text 1"


async def test_iteration_cap_records_not_converged() -> None:
    def newest_ab_first(shown: dict[str, str]) -> str:
        def key(label: str) -> int:
            text = shown[label]
            return -int(text.split()[-1]) if text.startswith("AB-") else 0

        return "RANKING: " + " > ".join(sorted(shown, key=key))

    fake = role_fake(judge=newest_ab_first)
    result = await play(fake, max_iterations=3)
    assert not result.converged and len(result.rounds) == 3
    assert result.refined == "AB-text 3" and result.winner_source == "AB"


async def test_paper_synthesizer_sees_shuffled_versions_not_the_critique() -> None:
    fake = role_fake(critique=lambda n: "CRITIQUE-MARK", judge=prefer("draft"))
    result = await play(fake)
    synth_msgs = [m for m, _ in role_calls(fake, "synthesizer")]
    for rnd, msgs in zip(result.rounds, synth_msgs, strict=True):
        body = msgs[-1]["content"]
        assert "CRITIQUE-MARK" not in body
        texts = {"A": rnd.a, "B": rnd.b}
        assert body.index(texts[rnd.merge_order[0]]) < body.index(texts[rnd.merge_order[1]])
    orders = set()
    for seed in range(20):
        orders.add((await play(role_fake(judge=prefer("draft")), seed=seed)).rounds[0].merge_order)
    assert orders == {("A", "B"), ("B", "A")}


async def test_paper_critic_has_no_no_flaws_exit() -> None:
    fake = role_fake(critique=lambda n: "NO FLAWS", judge=prefer("draft"))
    result = await play(fake)
    assert not any(r.no_flaws for r in result.rounds)
    assert count(fake, "judge") == 6
    assert "NO FLAWS" not in [m for m, _ in role_calls(fake, "critic")][0][-1]["content"]


async def test_hadron_no_flaws_is_an_a_win_without_judging() -> None:
    fake = role_fake(critique=lambda n: "I found no flaws in this answer.")
    result = await play(fake, variant="hadron")
    assert result.converged and [r.no_flaws for r in result.rounds] == [True, True]
    assert count(fake, "judge") == count(fake, "author_b") == count(fake, "synthesizer") == 0
    assert result.preference.rejected is None


async def test_hadron_synthesizer_repairs_a_from_the_critique_without_b() -> None:
    fake = role_fake(critique=lambda n: "CRITIQUE-MARK", judge=prefer("draft", "B-", "AB-"))
    result = await play(fake, variant="hadron")
    synth = [m for m, _ in role_calls(fake, "synthesizer")][0][-1]["content"]
    assert "CRITIQUE-MARK" in synth and "draft-text" in synth and "B-text" not in synth
    assert result.rounds[0].merge_order == ()
    assert result.rounds[0].scores == {"A": 6, "B": 3, "AB": 0}


async def test_hadron_ties_prefer_ab_over_b_and_judges_give_ranking_only() -> None:
    votes = iter(["RANKING: {B} > {AB} > {A}", "RANKING: {AB} > {B} > {A}"] * 10)

    def judge(shown: dict[str, str]) -> str:
        label = {v.split()[0].split("-")[0]: k for k, v in shown.items()}
        return next(votes).format(A=label["draft"], B=label["B"], AB=label["AB"])

    fake = role_fake(judge=judge)
    result = await play(fake, variant="hadron", judges=2, max_iterations=1)
    assert result.rounds[0].scores == {"A": 0, "B": 3, "AB": 3}
    assert result.rounds[0].winner == "AB"
    judge_prompt = [m for m, _ in role_calls(fake, "judge")][0][-1]["content"]
    assert "one line only" in judge_prompt


async def test_hadron_fail_safe_when_half_the_votes_or_fewer_parse() -> None:
    replies = iter(["RANKING: X1 > X2 > X3", "no idea", "RANKING: X1 > X1 > X2", "RANKING: X2 > X1 > X3"])
    fake = role_fake(judge=lambda shown: next(replies))
    result = await play(fake, variant="hadron", judges=4, max_iterations=1)
    rnd = result.rounds[0]
    assert rnd.fail_safe and rnd.winner == "A" and rnd.scores == {"A": 0, "B": 0, "AB": 0}
    assert [v.parsed for v in rnd.votes].count(True) == 2
    assert not rnd.decisive


async def test_paper_drops_unparseable_votes_and_records_them() -> None:
    replies = iter(["RANKING: X1 > X2 > X3", "I cannot decide.", "RANKING: X3 > X2 > X1"])
    fake = role_fake(judge=lambda shown: next(replies))
    result = await play(fake, judges=3, max_iterations=1)
    rnd = result.rounds[0]
    assert not rnd.fail_safe
    bad = [v for v in rnd.votes if not v.parsed]
    assert len(bad) == 1 and bad[0].raw == "I cannot decide." and "RANKING" in (bad[0].error or "")
    assert sum(rnd.scores.values()) == 2 * (3 + 2 + 1)


async def test_label_permutation_bookkeeping() -> None:
    fake = role_fake(judge=lambda shown: "RANKING: X1 > X2 > X3")
    result = await play(fake, judges=5, max_iterations=1)
    for vote in result.rounds[0].votes:
        assert vote.ranking == vote.shown
    for (msgs, _), _vote in zip(role_calls(fake, "judge"), result.rounds[0].votes, strict=False):
        shown = dict(_CANDIDATE.findall(msgs[-1]["content"]))
        assert sorted(shown) == ["X1", "X2", "X3"]
    perms = {v.shown for seed in range(10) for v in (await play(role_fake(), seed=seed)).rounds[0].votes}
    assert len(perms) == 6


async def test_failed_judge_call_drops_only_that_vote() -> None:
    replies = role_replies(judge=prefer("draft"))
    failed: list[list[Message]] = []  # the judge call that got the error

    def first_judge_fails(messages: list[Message], params: SamplingParams) -> str | BaseException:
        if role_of(messages) == "judge" and not failed:
            failed.append(messages)
            return ServerError("boom")
        return replies(messages, params)

    fake = ScriptedChatModel(default=first_judge_fails, model="fake", prompt_tokens=10, completion_tokens=5)
    result = await play(fake, judges=3, max_iterations=1)
    votes = result.rounds[0].votes
    assert [v.parsed for v in votes].count(False) == 1
    assert "ServerError" in (next(v for v in votes if not v.parsed).error or "")


async def test_same_seed_replays_exactly_and_seeds_reach_the_calls() -> None:
    a, b = role_fake(judge=prefer("B-", "draft")), role_fake(judge=prefer("B-", "draft"))
    ra, rb = await play(a, seed=7), await play(b, seed=7)
    assert ra == rb
    assert [p.seed for _, p in a.calls] == [p.seed for _, p in b.calls]
    assert len({p.seed for _, p in a.calls}) == len(a.calls)
    rc = await play(role_fake(judge=prefer("B-", "draft")), seed=8)
    assert [v.shown for v in rc.rounds[0].votes] != [v.shown for v in ra.rounds[0].votes]


def test_row_seed_depends_on_seed_and_content_only() -> None:
    assert row_seed(0, "x") == row_seed(0, "x")
    assert row_seed(0, "x") != row_seed(1, "x") != row_seed(0, "y")
    assert 0 <= row_seed(3, "z") < 2**63


async def test_temperatures_per_role_and_judge_constraint() -> None:
    fake = role_fake(judge=prefer("draft"))
    await play(fake, author_temperature=0.9, judge_temperature=0.2, temperature=0.5, max_iterations=1)
    temps = {role: p.temperature for role, calls in fake.calls_by(role_of).items() for _, p in calls}
    assert temps == {"teacher": 0.5, "critic": 0.5, "author_b": 0.9, "synthesizer": 0.5, "judge": 0.2}
    assert all(p.choices and len(p.choices) == 6 for _, p in role_calls(fake, "judge"))
    fake2 = role_fake(judge=prefer("draft"))
    await play(fake2, constrain_judges=False, max_iterations=1)
    assert all(p.choices is None for _, p in fake2.calls)


async def test_judge_pool_round_robin_records_each_model() -> None:
    judges = tuple(role_fake(name=f"judge-{i}", judge=prefer("draft")) for i in range(3))
    main = role_fake(name="main")
    models = RoleModels(main, main, main, main, judges)
    result = await run_tournament(TASK, models, settings(judges=6, max_iterations=1), random.Random(0))
    names = [v.model for v in result.rounds[0].votes]
    assert sorted(names) == sorted(["judge-0", "judge-1", "judge-2"] * 2)
    assert all(count(j, "judge") == 2 for j in judges) and count(main, "judge") == 0


async def test_system_prompt_reaches_only_the_teacher() -> None:
    fake = role_fake(judge=prefer("draft"))
    await play(fake, system_prompt="Be brief.", max_iterations=1)
    teacher = [m for m, _ in role_calls(fake, "teacher")][0]
    assert teacher[0] == {"role": "system", "content": "Be brief."}
    assert prompts.task_text(teacher) == "Explain TCP slow start."


@pytest.mark.parametrize("variant", ["paper", "hadron"])
async def test_judges_of_a_round_run_concurrently(variant: str) -> None:
    in_flight = peak = 0

    async def track(messages: list[Message], params: SamplingParams) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    await play(role_fake(judge=prefer("draft"), on_call=track), variant=variant, judges=5, max_iterations=1)
    assert peak == 5
