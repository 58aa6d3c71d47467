"""Speculative critique (``speculate``): the same results as without it, its extra calls recorded and
counted, a resumed run replayed from the cache, the hadron critic's NO FLAWS respected, and speculative
calls waiting behind normal ones for a concurrency slot."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from pydantic import SecretStr

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map, cli
from hadron_hf.chat import Completion, Message, SamplingParams
from hadron_hf.cli.options import config_from_args
from hadron_hf.core.tournament import RoleModels, TournamentSettings, run_tournament
from hadron_hf.engine.endpoint import AdaptiveLimit
from hadron_hf.engine.resilience import Limits, ResilientChatModel
from hadron_hf.errors import RequestRejectedError
from hadron_hf.testing import FakeOpenAIServer, Reply, ScriptedChatModel, role_of, without_speculation

PROMPTS = [f"Explain topic {i} to a new engineer." for i in range(5)]
_CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)


def judges_with_a_taste(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    """Judges that rank by a preference shared across the panel 80% of the time, at random otherwise."""
    if role != "judge":
        return None
    shown = _CANDIDATE.findall(messages[-1]["content"])
    rng = random.Random(body.get("seed"))
    if rng.random() < 0.8:
        labels = [label for label, text in sorted(shown, key=lambda s: hashlib.sha256(s[1].encode()).digest())]
    else:
        labels = [label for label, _ in shown]
        rng.shuffle(labels)
    return f"{labels[0]} is best.\nRANKING: {' > '.join(labels)}"


def config(server: FakeOpenAIServer, **fields: Any) -> AutoReasonConfig:
    model = ModelConfig(base_url=server.url, model="fake", api_key=SecretStr("k"), max_concurrency=8)
    defaults: dict[str, Any] = {"judges": 5, "max_iterations": 6, "seed": 3, "cache": False, "progress": False}
    return AutoReasonConfig(model=model, **{**defaults, **fields})


def refine(cfg: AutoReasonConfig) -> list[dict[str, Any]]:
    out = Dataset.from_dict({"prompt": PROMPTS}).map(autoreason_map, batched=True, fn_kwargs={"config": cfg},
                                                     load_from_cache_file=False)
    rows = out.to_list()
    assert all(r["autoreason_status"] == "ok" for r in rows), [r["autoreason_error"] for r in rows]
    return rows


def requests(server: FakeOpenAIServer, start: int) -> Counter[str]:
    """What the server was asked since request ``start``: messages and sampling, as sent."""
    keys = ("messages", "seed", "temperature", "max_tokens")
    return Counter(json.dumps({k: b.get(k) for k in keys}, sort_keys=True) for b in server.log.bodies[start:])


@pytest.mark.parametrize(("variant", "mode", "early_stop"), [
    ("paper", "incumbent", False), ("paper", "all", False), ("paper", "all", True),
    ("hadron", "incumbent", False), ("hadron", "incumbent", True), ("hadron", "all", False),
], ids=["paper-incumbent", "paper-all", "paper-all-early-stop", "hadron-incumbent", "hadron-incumbent-early-stop",
        "hadron-all"])
def test_speculation_gives_the_same_rows_and_sends_the_same_requests_plus_the_discarded(
        variant: str, mode: str, early_stop: bool) -> None:
    with FakeOpenAIServer(latency=0.005, responder=judges_with_a_taste) as server:
        plain = refine(config(server, variant=variant, early_stop_judging=early_stop))
        plain_requests = requests(server, 0)
        start = len(server.log.bodies)
        fast = refine(config(server, variant=variant, early_stop_judging=early_stop, speculate=mode))
        fast_requests = requests(server, start)
    assert [without_speculation(r) for r in fast] == [without_speculation(r) for r in plain]
    assert all(r["autoreason_usage"]["speculative_calls"] == 0 for r in plain)
    usage = [r["autoreason_usage"] for r in fast]
    hits, discarded = sum(u["speculative_hits"] for u in usage), sum(u["speculative_calls"] for u in usage)
    assert hits > 0, "no critique came from speculation: the test would not show anything"
    if mode == "all":
        assert discarded > 0
    # Every request of the plain run went out as is (a kept critique is the very same request), and the
    # only others are the discarded speculative critiques.
    assert not plain_requests - fast_requests
    extra = fast_requests - plain_requests
    assert sum(extra.values()) == discarded
    assert all(role_of(json.loads(k)["messages"]) == "critic" for k in extra)


def test_discarded_calls_are_in_the_trace_usage_and_cost() -> None:
    with FakeOpenAIServer(latency=0.005, responder=judges_with_a_taste) as server:
        cfg = config(server, speculate="all")
        priced = cfg.model_copy(update={"model": cfg.model.model_copy(update={
            "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0})})
        rows = refine(priced)
        sent = server.log.requests
    total_calls = 0
    for row in rows:
        usage, spec = row["autoreason_usage"], row["autoreason_trace"]["speculative"]
        assert len(spec) == usage["speculative_calls"]
        assert sum(s["prompt_tokens"] for s in spec) == usage["speculative_prompt_tokens"]
        assert sum(s["completion_tokens"] for s in spec) == usage["speculative_completion_tokens"]
        assert all(s["candidate"] in ("A", "B", "AB") and s["critique"] and s["model"] == "fake" for s in spec)
        rounds = row["autoreason_trace"]["iterations"]
        assert all(2 <= s["iteration"] <= rounds + 1 for s in spec)
        # reasoning_traces lists the row's own calls only, as without speculation.
        assert len(row["reasoning_traces"]) == usage["calls"]
        prompt = usage["prompt_tokens"] + usage["speculative_prompt_tokens"]
        completion = usage["completion_tokens"] + usage["speculative_completion_tokens"]
        assert usage["cost_usd"] == pytest.approx((prompt * 1.0 + completion * 2.0) / 1e6)
        total_calls += usage["calls"] + usage["speculative_calls"]
    assert any(r["autoreason_usage"]["speculative_calls"] for r in rows)
    assert total_calls == sent


def test_a_resumed_run_replays_speculative_calls_from_the_cache(tmp_path: Path) -> None:
    with FakeOpenAIServer(latency=0.005, responder=judges_with_a_taste) as server:
        cfg = config(server, variant="hadron", speculate="all", cache=True, cache_dir=str(tmp_path))
        first = refine(cfg)
        sent = server.log.requests
        again = refine(cfg)
        assert server.log.requests == sent
        # The plain run's calls are all among them: ``speculative`` is not part of the cache key.
        plain = refine(cfg.model_copy(update={"speculate": "off"}))
        assert server.log.requests == sent
    assert all(r["autoreason_usage"]["cached_calls"] == r["autoreason_usage"]["calls"] for r in again + plain)
    uncached = [dict(without_speculation(r), autoreason_usage=None) for r in first]
    assert [dict(without_speculation(r), autoreason_usage=None) for r in again] == uncached
    assert [dict(without_speculation(r), autoreason_usage=None) for r in plain] == uncached
    speculative = [r["autoreason_trace"]["speculative"] for r in first]
    assert [r["autoreason_trace"]["speculative"] for r in again] == speculative


def _no_flaws_once_b_is_in(messages: list[Message], params: SamplingParams) -> str:
    """Round 1: the critic finds a flaw in the draft and B wins; from then on B has no flaws."""
    user = messages[-1]["content"]
    role = role_of([dict(m) for m in messages])
    if role == "critic":
        return "NO FLAWS" if "B-TEXT" in user else "1. \"draft\" lacks an example."
    if role == "author_b":
        return "B-TEXT answer"
    if role == "synthesizer":
        return "repaired answer"
    if role == "judge":
        shown = _CANDIDATE.findall(user)
        labels = sorted((label for label, _ in shown), key=lambda lb: "B-TEXT" not in dict(shown)[lb])
        return "RANKING: " + " > ".join(labels)
    return "draft answer"


@pytest.mark.parametrize("mode", ["incumbent", "all"])
async def test_hadron_no_flaws_from_a_kept_speculative_critique_ends_the_round(mode: str) -> None:
    task: list[Message] = [{"role": "user", "content": "Explain DNS."}]
    settings = TournamentSettings(variant="hadron", judges=3, max_iterations=6)
    plain_model = ScriptedChatModel(default=_no_flaws_once_b_is_in)
    plain = await run_tournament(task, RoleModels.single(plain_model), settings, random.Random(5))
    fast_model = ScriptedChatModel(default=_no_flaws_once_b_is_in)
    fast = await run_tournament(task, RoleModels.single(fast_model), dataclasses.replace(settings, speculate=mode),
                                random.Random(5))
    assert [(r.winner, r.no_flaws) for r in plain.rounds] == [("B", False), ("A", True), ("A", True)]
    assert plain.converged and plain.refined == "B-TEXT answer"
    assert dataclasses.replace(fast, discarded=(), speculative_hits=0) == plain
    # Round 3's critique (of B, the incumbent) started with round 2, whose critic found no flaws.
    critic_calls = [(p.speculative, p.seed) for m, p in fast_model.calls if role_of([dict(x) for x in m]) == "critic"]
    plain_seeds = [p.seed for m, p in plain_model.calls if role_of([dict(x) for x in m]) == "critic"]
    assert {seed for _, seed in critic_calls} == set(plain_seeds)
    if mode == "all":
        # Round 2's critique of B came from speculation too; A's and AB's were discarded.
        assert fast.speculative_hits == 2
        assert sorted((d.candidate, d.call.iteration) for d in fast.discarded) == [("A", 2), ("AB", 2)]
    else:
        # B won round 1: A's speculative critique was discarded, B's asked as soon as the votes locked it.
        assert fast.speculative_hits == 1
        assert [(d.candidate, d.call.iteration) for d in fast.discarded] == [("A", 2)]
    assert all(d.call.role == "critic" and d.call.answer for d in fast.discarded)


async def test_no_speculation_on_the_last_round_or_a_converging_incumbent() -> None:
    task: list[Message] = [{"role": "user", "content": "Explain DNS."}]
    model = ScriptedChatModel(default=lambda m, p: "RANKING: X1 > X2 > X3" if role_of([dict(x) for x in m]) == "judge"
                              else "answer")
    # Every candidate is the same text, so A wins each round by the tie order and converges in round 2.
    settings = TournamentSettings(variant="paper", judges=3, max_iterations=5, converge_k=2, speculate="incumbent")
    result = await run_tournament(task, RoleModels.single(model), settings, random.Random(1))
    assert [r.winner for r in result.rounds] == ["A", "A"] and result.converged
    # Round 1 speculated A's next critique (kept); round 2's A win converges, so it speculated nothing.
    assert result.speculative_hits == 1 and result.discarded == ()
    assert sum(p.speculative for _, p in model.calls) == 1


async def test_window_serves_queued_normal_calls_before_queued_speculative_ones() -> None:
    window = AdaptiveLimit(1)
    order: list[str] = []
    await window.acquire()

    async def take(name: str) -> None:
        await window.acquire(first=name == "retry", speculative=name.startswith("s"))
        order.append(name)
        await asyncio.sleep(0)
        window.release()

    tasks = [asyncio.ensure_future(take(name)) for name in ("s1", "n1", "s2", "n2")]
    await asyncio.sleep(0)
    late = [asyncio.ensure_future(take("n3")), asyncio.ensure_future(take("retry"))]  # after the speculative ones
    await asyncio.sleep(0)
    assert window.in_use == 1 and not order
    window.release()
    await asyncio.gather(*tasks, *late)
    assert order == ["retry", "n1", "n2", "n3", "s1", "s2"]
    assert window.in_use == 0


async def test_window_passes_on_a_slot_whose_waiter_was_cancelled() -> None:
    window = AdaptiveLimit(1)
    await window.acquire()
    gone = asyncio.ensure_future(window.acquire())
    waiting = asyncio.ensure_future(window.acquire(speculative=True))
    await asyncio.sleep(0)
    window.release()  # handed to ``gone``...
    gone.cancel()  # ...which gives up before it runs: the slot must reach the speculative waiter
    await asyncio.gather(gone, return_exceptions=True)
    await asyncio.wait_for(waiting, 5)
    assert window.in_use == 1


def held_backend() -> tuple[ScriptedChatModel, asyncio.Event]:
    """A backend whose second call holds its slot until the event is set; its ``calls`` record the start order."""
    release = asyncio.Event()

    async def hold_the_second(messages: list[Message], params: SamplingParams) -> None:
        if len(backend.calls) == 2:
            await release.wait()

    backend = ScriptedChatModel(default="ok", model="held", prompt_tokens=0, completion_tokens=0,
                                on_call=hold_the_second)
    return backend, release


def started(backend: ScriptedChatModel) -> list[str]:
    """The first message of each call ``backend`` got, in the order they started."""
    return [messages[0]["content"] for messages, _ in backend.calls]


async def test_a_saturated_endpoint_sends_queued_normal_calls_before_speculative_ones() -> None:
    inner, release = held_backend()
    endpoint = ResilientChatModel(inner, "held", Limits(max_concurrency=1))

    def call(name: str, speculative: bool) -> asyncio.Future[Completion]:
        return asyncio.ensure_future(endpoint.chat([{"role": "user", "content": name}],
                                                   SamplingParams(seed=1, speculative=speculative)))

    await call("probe", False)  # the endpoint's first call goes alone
    holder = call("n0", False)
    for _ in range(5):
        await asyncio.sleep(0)
    queued = [call("s1", True), call("n1", False), call("s2", True), call("n2", False)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started(inner) == ["probe", "n0"]
    release.set()
    await asyncio.gather(holder, *queued)
    assert started(inner) == ["probe", "n0", "n1", "n2", "s1", "s2"]


def test_speculation_does_nothing_when_the_critic_uses_a_batch_api() -> None:
    live = AutoReasonConfig(model=ModelConfig(base_url="http://127.0.0.1:9/v1", model="m"), speculate="all")
    assert live.settings().speculate == "all"
    assert live.with_batch_api().settings().speculate == "off"
    assert AutoReasonConfig(model=live.model).settings().speculate == "off"


def test_cli_speculate_flag_sets_the_config(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["refine", str(tmp_path / "in.jsonl"), "--base-url",
                                          "http://127.0.0.1:9/v1", "--speculate", "incumbent"])
    assert config_from_args(args).speculate == "incumbent"
    unset = cli.build_parser().parse_args(["refine", str(tmp_path / "in.jsonl"), "--base-url", "http://127.0.0.1:9/v1"])
    assert config_from_args(unset).speculate == "off"


def garbling_judges(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    """The same judges, but a third of their replies (by seed) name no ranking: re-asks and undecided rounds."""
    if role == "judge" and int(body.get("seed") or 0) % 3 == 0:
        return "They all look fine to me."
    return judges_with_a_taste(role, messages, body)


@pytest.mark.parametrize("mode", ["incumbent", "all"])
def test_undecided_rounds_keep_the_incumbent_and_its_speculative_critique(mode: str) -> None:
    with FakeOpenAIServer(latency=0.005, responder=garbling_judges) as server:
        plain = refine(config(server, judge_quorum=5))
        fast = refine(config(server, judge_quorum=5, speculate=mode))
    rounds = [r for row in plain for r in row["autoreason_trace"]["rounds"]]
    assert any(r["undecided"] for r in rounds) and any(r["reasked"] for r in rounds)
    assert [without_speculation(r) for r in fast] == [without_speculation(r) for r in plain]
    assert sum(r["autoreason_usage"]["speculative_hits"] for r in fast) > 0


def slow_speculation(replies: Reply) -> ScriptedChatModel:
    """Round 3's speculative critique (the second of B) never answers: it is running when round 2 fails."""
    of_b = 0

    async def hang_the_second_of_b(messages: list[Message], params: SamplingParams) -> None:
        nonlocal of_b
        if params.speculative and "B-TEXT" in messages[-1]["content"]:
            of_b += 1
            if of_b > 1:
                await asyncio.Event().wait()

    return ScriptedChatModel(default=replies, on_call=hang_the_second_of_b)


async def test_a_failed_row_fails_as_without_speculation_and_leaves_no_call_running() -> None:
    def replies(messages: list[Message], params: SamplingParams) -> str | BaseException:
        role = role_of([dict(m) for m in messages])
        if role == "author_b" and "B-TEXT" in messages[-1]["content"]:
            return RequestRejectedError("context too long")  # round 2's author, while round 3 is speculated
        return _no_flaws_once_b_is_in(messages, params).replace("NO FLAWS", "1. still vague")

    task: list[Message] = [{"role": "user", "content": "Explain DNS."}]
    settings = TournamentSettings(variant="hadron", judges=3, max_iterations=6)
    for mode in ("off", "all"):
        model = slow_speculation(replies)
        with pytest.raises(RequestRejectedError, match="context too long"):
            await run_tournament(task, RoleModels.single(model), dataclasses.replace(settings, speculate=mode),
                                 random.Random(5))
        assert asyncio.all_tasks() == {asyncio.current_task()}  # the speculative critiques were cancelled
