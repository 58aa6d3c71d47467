"""Judge panels against real loopback servers: quorum and re-ask, counterbalanced labels, failing judges.

Judges are scripted by a responder on ``FakeOpenAIServer``; the tournament runs through ``autoreason_map``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf import columns as col
from hadron_hf.core.panel import balanced_orders, default_quorum
from hadron_hf.errors import ConfigError, EndpointDownError
from hadron_hf.summary import summarize
from hadron_hf.testing import FakeOpenAIServer, Faults, role_of
from hadron_hf.views import PairOptions, build_view

CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)
PROMPTS = [f"Explain topic {i} in two sentences." for i in range(4)]
POSITIONAL = "RANKING: X1 > X2 > X3"


def refine(url: str, cache_dir: str, prompts: list[str] = PROMPTS, judge_url: str | None = None,
           **kw: Any) -> list[dict[str, Any]]:
    """A real ``autoreason_map`` run; ``judge_url``: judges on their own server, without retries."""
    judges = None if judge_url is None else [ModelConfig(base_url=judge_url, model="judge", api_key_env=None,
                                                         max_retries=0)]
    cfg = AutoReasonConfig(model=ModelConfig(base_url=url, model="m", api_key_env=None), judge_models=judges,
                           cache_dir=cache_dir, progress=False, fail_fast_after=1000,
                           **{"judges": 3, "max_iterations": 3, **kw})
    ds = Dataset.from_dict({"prompt": prompts})
    return list(ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg}))


def judged(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rounds if not r["no_flaws"]]


def dpo_pairs(rows: list[dict[str, Any]]) -> int:
    ds = Dataset.from_list(rows)
    return sum(build_view(ds, "dpo", PairOptions(pairs=p)).rows_out for p in ("one", "all"))


# Balanced labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seats", [3, 6, 9, 4, 7], ids=lambda n: f"{n}-seats")
def test_orders_are_counterbalanced_and_replayable(seats: int) -> None:
    candidates = ("A", "B", "AB")
    for seed in range(20):
        orders = balanced_orders(candidates, seats, random.Random(seed))
        assert orders == balanced_orders(candidates, seats, random.Random(seed))
        assert all(sorted(o) == sorted(candidates) for o in orders)
        per_position = [Counter(o[i] for o in orders) for i in range(3)]
        spread = [max(c[x] for x in candidates) - min(c[x] for x in candidates) for c in per_position]
        # Whole blocks: each candidate under each label equally often; leftover seats add at most one.
        assert max(spread) == (0 if seats % 3 == 0 else max(spread)) <= 1
        assert len(set(orders)) == min(seats, 3)  # cyclic shifts of one order
    assert len({o for s in range(20) for o in balanced_orders(candidates, 3, random.Random(s))}) == 6


def test_two_candidate_orders_for_evaluation() -> None:
    orders = balanced_orders(("draft", "refined"), 4, random.Random(1))
    assert Counter(o[0] for o in orders) == {"draft": 2, "refined": 2}


@pytest.mark.parametrize("early", [False, True], ids=["full", "early-stop"])
@pytest.mark.parametrize("variant", ["paper", "hadron"])
@pytest.mark.parametrize("judges", [3, 6], ids=["3-judges", "6-judges"])
def test_a_positional_judge_ties_every_round_and_the_incumbent_stays(
        server: FakeOpenAIServer, cache_dir: str, judges: int, variant: str, early: bool) -> None:
    server.responder = lambda role, messages, body: POSITIONAL if role == "judge" else None
    server.no_flaws_rate = 0.0
    rows = refine(server.url, cache_dir, judges=judges, variant=variant, early_stop_judging=early)
    rounds = [r for row in rows for r in judged(row[col.TRACE]["rounds"])]
    assert len(rounds) == 2 * len(PROMPTS)
    for rnd in rounds:
        assert len(set(rnd["scores"].values())) == 1, rnd["scores"]  # an exact tie
        assert rnd["winner"] == "A" and not rnd["undecided"] and len(rnd["votes"]) == judges
    for row in rows:
        assert row[col.REFINED] == row[col.DRAFT] and row[col.TRACE]["winner_source"] == "draft"
    summary = summarize(rows)
    assert summary.position_votes == summary.votes_parsed == len(rounds) * judges
    assert summary.position_repeat_share == 1.0
    assert "repeat the shown order" in summary.render()


# Quorum, re-ask, undecided -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["paper", "hadron"])
def test_unparseable_judges_never_make_a_clean_convergence(server: FakeOpenAIServer, cache_dir: str,
                                                           variant: str) -> None:
    server.responder = lambda role, messages, body: "They are all good." if role == "judge" else None
    server.no_flaws_rate = 0.0
    rows = refine(server.url, cache_dir, variant=variant)
    summary = summarize(rows)
    assert summary.clean_converged == 0 and dpo_pairs(rows) == 0
    for row in rows:
        trace = row[col.TRACE]
        assert row[col.STATUS] == "ok" and row[col.REFINED] == row[col.DRAFT]
        assert row[col.PREFERENCE]["rejected"] is None
        if variant == "paper":
            assert trace["quality"] == "undecided" and not trace["converged"] and trace["iterations"] == 3
            for rnd in trace["rounds"]:
                assert rnd["undecided"] and rnd["quorum"] == 2 and rnd["reasked"] == 3 and rnd["winner"] == "A"
                assert [v["reask"] for v in rnd["votes"]] == [False] * 3 + [True] * 3
                seeds = [b["seed"] for b in server.log.bodies if role_of(b["messages"]) == "judge"]
                assert len(set(seeds)) == len(seeds)  # every re-ask has a fresh seed
        else:  # Hadron's fail-safe, kept for parity: flagged, never clean, never a pair
            assert trace["quality"] == "fail_safe"
            assert all(r["fail_safe"] and r["reasked"] == 0 and not r["undecided"] for r in trace["rounds"])
    if variant == "paper":
        assert summary.undecided_rows == len(PROMPTS) and summary.undecided_rounds == 3 * len(PROMPTS)
        assert "undecided" in summary.render()
    else:
        assert summary.fail_safe_rows == len(PROMPTS) and summary.fail_safe_rounds == 2 * len(PROMPTS)


FAILURES = {
    "503": dict(faults=Faults(rate=1.0, kinds=("503",))),
    # The judge prompt holds all three candidates: the longest prompt of any role.
    "context-length": dict(max_prompt_chars=400),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_failing_judges_are_missing_votes(server: FakeOpenAIServer, cache_dir: str, failure: str) -> None:
    server.no_flaws_rate = 0.0
    with FakeOpenAIServer(**FAILURES[failure]) as judges:  # type: ignore[arg-type]
        rows = refine(server.url, cache_dir, prompts=PROMPTS[:1], judge_url=judges.url)
    (row,) = rows
    trace = row[col.TRACE]
    assert row[col.STATUS] == "ok" and trace["quality"] == "undecided" and not trace["converged"]
    failed = [r for r in trace["rounds"] if r["undecided"]]
    assert len(failed) >= 2 and all(r["reasked"] == 3 for r in failed)
    assert all(v["error"] and not v["parsed"] for r in failed for v in r["votes"])
    assert summarize(rows).clean_converged == 0


def test_a_judge_endpoint_that_dies_mid_run_stops_the_job_and_a_rerun_resumes(server: FakeOpenAIServer,
                                                                               cache_dir: str) -> None:
    """A dead endpoint is not a source of missing votes: the job stops (the engine's rule), so no row is
    written at all, let alone reported as a clean convergence; once the judges are back, a re-run resumes."""
    server.no_flaws_rate = 0.0
    # Answers the first panel, then every connection drops (the endpoint died mid-run).
    with FakeOpenAIServer(faults=Faults(at={n: "drop" for n in range(4, 400)})) as judges:
        with pytest.raises(EndpointDownError, match="stopped answering"):
            refine(server.url, cache_dir, prompts=PROMPTS[:1], judge_url=judges.url)
        asked = judges.log.requests
        judges.faults = Faults()
        (row,) = refine(server.url, cache_dir, prompts=PROMPTS[:1], judge_url=judges.url)
        assert judges.log.requests > asked  # the re-run went on where the panel died
    assert row[col.STATUS] == "ok" and row[col.TRACE]["quality"] == "clean"
    teacher_calls = [b for b in server.log.bodies if role_of(b["messages"]) == "teacher"]
    # Every call paid before the stop was replayed from the cache, the draft included.
    assert len(teacher_calls) == 1 and server.log.repeated == 0


def draft_preferring(garble: Any) -> Any:
    """Judges that rank the draft first, but answer nonsense when ``garble(x1_is_draft, first_sight)``."""
    seen: set[str] = set()

    def respond(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
        if role != "judge":
            return None
        content = messages[-1]["content"]
        shown = CANDIDATE.findall(content)
        first_sight = content not in seen
        seen.add(content)
        if garble(shown[0][1].startswith("teacher"), first_sight):
            return "Hard to say."
        return "RANKING: " + " > ".join(sorted((lab for lab, _ in shown),
                                               key=lambda lab: not dict(shown)[lab].startswith("teacher")))

    return respond


def test_a_reask_recovers_a_short_panel_and_replays(server: FakeOpenAIServer, cache_dir: str,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    # Two of three seats (those not showing the draft as X1) fail on their first ask only.
    server.responder = draft_preferring(lambda x1_is_draft, first: first and not x1_is_draft)
    server.no_flaws_rate = 0.0
    (row,) = refine(server.url, cache_dir, prompts=PROMPTS[:1], max_iterations=2)
    trace = row[col.TRACE]
    for rnd in trace["rounds"]:
        assert (rnd["undecided"], rnd["reasked"], rnd["quorum"], rnd["winner"]) == (False, 2, 2, "A")
        first, again = rnd["votes"][:3], rnd["votes"][3:]
        assert [v["parsed"] for v in first] == [v["shown"][0] == "A" for v in first]
        assert [(v["judge"], v["shown"]) for v in again] == [(v["judge"], v["shown"]) for v in first
                                                            if not v["parsed"]]
        assert all(v["parsed"] and v["reask"] for v in again)
    assert trace["quality"] == "clean" and trace["converged"]
    # Replayable: the same seed draws the same re-ask seeds (a fresh cache, so every call is made again).
    server.responder = draft_preferring(lambda x1_is_draft, first: first and not x1_is_draft)
    (replayed,) = refine(server.url, str(tmp_path_factory.mktemp("cache2")), prompts=PROMPTS[:1], max_iterations=2)
    assert replayed[col.TRACE] == trace


@pytest.mark.parametrize("stubborn", [False, True], ids=["recovers", "stays-short"])
def test_a_configured_quorum(server: FakeOpenAIServer, cache_dir: str, stubborn: bool) -> None:
    # The seat showing the draft as X1 fails: on its first ask only, or every time.
    server.responder = draft_preferring(lambda x1_is_draft, first: x1_is_draft and (first or stubborn))
    server.no_flaws_rate = 0.0
    (row,) = refine(server.url, cache_dir, prompts=PROMPTS[:1], max_iterations=1, judge_quorum=3)
    rnd = row[col.TRACE]["rounds"][0]
    assert (rnd["quorum"], rnd["reasked"], rnd["undecided"]) == (3, 1, stubborn)
    assert row[col.TRACE]["quality"] == ("undecided" if stubborn else "clean")
    assert default_quorum(3) == 2 and default_quorum(6) == 4 and default_quorum(7) == 4
    with pytest.raises(ConfigError, match="judge_quorum"):
        AutoReasonConfig.from_dict({"judges": 3, "judge_quorum": 4})
