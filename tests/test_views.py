"""The training views, built from a real ``autoreason_map`` run against the loopback OpenAI server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, concatenate_datasets

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf import columns as col
from hadron_hf.errors import ConfigError, InputError
from hadron_hf.sources import load_refined
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views import (
    ERROR_ROW,
    NO_CHANGE,
    NO_REASONING,
    VIEW_NAMES,
    CriticOptions,
    PairOptions,
    SftOptions,
    build_view,
    dpo_rows,
    kto_rows,
    view_batch,
    view_features,
)
from hadron_hf.views.pairs import BELOW_MIN_MARGIN, NO_MARGIN, SAME_TEXT, TIE

PROMPTS = [f"Question {i}: explain topic {i} briefly." for i in range(10)]
BAD_PROMPTS = [None, "", "   "]


def refine_rows(url: str, prompts: list[Any], variant: str, column: str = "prompt",
                max_iterations: int = 4) -> Dataset:
    """A real tournament run over ``prompts`` (bad ones become error rows)."""
    cfg = AutoReasonConfig(model=ModelConfig(base_url=url, model="m", api_key_env="HADRON_VIEWS_KEY"),
                           judges=3, max_iterations=max_iterations, variant=variant, seed=1,
                           prompt_column=column, cache_dir=tempfile.mkdtemp(prefix="hadron-views-cache-"))
    ds = Dataset.from_dict({column: prompts})
    return ds.map(autoreason_map, batched=True, batch_size=64, fn_kwargs={"config": cfg})


def make_refined(url: str) -> Dataset:
    """Both variants, 10 good prompts each, plus 3 error rows each."""
    return concatenate_datasets([refine_rows(url, BAD_PROMPTS[:1] + PROMPTS + BAD_PROMPTS[1:], v)
                                 for v in ("paper", "hadron")])


def positional_on_some(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    """Judges of two prompts rank by position only; counterbalanced labels turn that into exact ties,
    so the refined set always holds tied (zero-margin) pairs for the filters to drop."""
    if role == "judge" and any(f"topic {i} " in messages[-1]["content"] for i in (3, 7)):
        return "RANKING: X1 > X2 > X3"
    return None


@pytest.fixture(scope="module")
def refined() -> Iterator[Dataset]:
    with FakeOpenAIServer(latency=0.002, reasoning="reasoning", responder=positional_on_some) as srv:
        yield make_refined(srv.url)


@pytest.fixture(scope="module")
def ok_rows(refined: Dataset) -> list[dict[str, Any]]:
    return [r for r in refined if r[col.STATUS] == col.STATUS_OK]


def assert_messages(value: Any, roles: set[str]) -> None:
    """TRL's conversational format: a non-empty list of exactly ``{"role", "content"}`` string dicts."""
    assert isinstance(value, list) and value
    for m in value:
        assert isinstance(m, dict) and set(m) == {"role", "content"}
        assert isinstance(m["content"], str) and m["role"] in roles


def assert_prompt(value: Any) -> None:
    assert_messages(value, {"system", "user", "assistant"})
    assert value[-1]["role"] == "user"
    assert all(m["role"] != "system" for m in value[1:])


def assert_answer(value: Any) -> None:
    assert_messages(value, {"assistant"})
    assert len(value) == 1 and value[0]["content"].strip()


def test_error_rows_are_excluded_and_counted_in_every_view(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    errors = len(refined) - len(ok_rows)
    assert errors == 2 * len(BAD_PROMPTS)
    for view in VIEW_NAMES:
        result = build_view(refined, view)
        assert result.rows_in == len(refined)
        assert result.dropped[ERROR_ROW] == errors, view
        assert result.dataset.features == view_features(view), view
        assert "rows in" in result.render() and ERROR_ROW in result.render()


def test_sft_messages_form(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "sft")
    assert result.rows_out == len(ok_rows) and result.dropped == {ERROR_ROW: 6}
    for row, src in zip(result.dataset, ok_rows, strict=True):
        assert set(row) == {"messages"}
        assert_messages(row["messages"], {"user", "assistant"})
        assert row["messages"] == [{"role": "user", "content": src["prompt"]},
                                   {"role": "assistant", "content": src[col.REFINED]}]


def test_sft_prompt_completion_form_with_system_prompt(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "sft", SftOptions(form="prompt_completion", system_prompt="Be terse."))
    for row, src in zip(result.dataset, ok_rows, strict=True):
        assert set(row) == {"prompt", "completion"}
        assert_prompt(row["prompt"])
        assert row["prompt"][0] == {"role": "system", "content": "Be terse."}
        assert_answer(row["completion"])
        assert row["completion"][0]["content"] == src[col.REFINED]


@pytest.mark.parametrize("cot", ["think", "field"], ids=["think-tags", "separate-field"])
def test_sft_chain_of_thought(refined: Dataset, ok_rows: list[dict[str, Any]], cot: str) -> None:
    result = build_view(refined, "sft", SftOptions(cot=cot))  # type: ignore[arg-type]
    assert result.rows_out == len(ok_rows)
    for row, src in zip(result.dataset, ok_rows, strict=True):
        answer = row["messages"][-1]["content"]
        writer = next(c for c in src[col.REASONING] if c["answer"] == src[col.REFINED] and c["role"] != "judge")
        if cot == "think":
            assert set(row) == {"messages"}
            assert answer == f"<think>\n{writer['reasoning']}\n</think>\n\n{src[col.REFINED]}"
        else:
            assert set(row) == {"messages", "reasoning"} and answer == src[col.REFINED]
            assert row["reasoning"] == writer["reasoning"] and row["reasoning"].startswith("Thinking as the")


def test_sft_chain_of_thought_drops_rows_without_reasoning() -> None:
    with FakeOpenAIServer() as srv:  # returns no reasoning at all
        plain = refine_rows(srv.url, PROMPTS[:3], "paper", max_iterations=1)
    result = build_view(plain, "sft", SftOptions(cot="think"))
    assert result.rows_out == 0 and result.dropped == {NO_REASONING: 3}
    assert build_view(plain, "sft").rows_out == 3


def test_dpo_default_is_the_preference_column(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "dpo")
    with_rejected = [r for r in ok_rows if r[col.PREFERENCE]["rejected"] is not None]
    assert result.rows_out == len(with_rejected) > 0
    for row, src in zip(result.dataset, with_rejected, strict=True):
        assert set(row) == {"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "margin"}
        assert_prompt(row["prompt"])
        assert_answer(row["chosen"])
        assert_answer(row["rejected"])
        assert row["chosen"] != row["rejected"]
        pref = src[col.PREFERENCE]
        assert row["chosen"][0]["content"] == src[col.REFINED] == pref["chosen"]
        assert row["rejected"][0]["content"] == pref["rejected"]
        assert row["margin"] == pref["margin"]
        if row["margin"] is not None:
            assert row["margin"] == row["score_chosen"] - row["score_rejected"] >= 0


@pytest.mark.parametrize("min_margin,drop_ties", [(1.0, False), (3.0, False), (None, True), (2.0, True)],
                         ids=["min1", "min3", "no-ties", "min2-no-ties"])
@pytest.mark.parametrize("pairs", ["one", "all"])
def test_dpo_margin_filters(refined: Dataset, min_margin: float | None, drop_ties: bool, pairs: str) -> None:
    unfiltered = build_view(refined, "dpo", PairOptions(pairs=pairs))  # type: ignore[arg-type]
    result = build_view(refined, "dpo", PairOptions(pairs=pairs, min_margin=min_margin,  # type: ignore[arg-type]
                                                    drop_ties=drop_ties))
    margins = result.dataset["margin"]
    assert 0 < result.rows_out < unfiltered.rows_out
    if min_margin is not None:
        assert all(m is not None and m >= min_margin for m in margins)
    if drop_ties:
        assert 0 not in margins
    assert set(result.dropped) - set(unfiltered.dropped) <= {BELOW_MIN_MARGIN, TIE, NO_MARGIN}
    for row in result.dataset:
        assert row["chosen"] != row["rejected"]


def test_dpo_all_pairs_cover_every_decisive_round(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "dpo", PairOptions(pairs="all"))
    expected = 0
    for src in ok_rows:
        for rnd in src[col.TRACE]["rounds"]:
            if rnd["no_flaws"] or rnd["fail_safe"]:
                continue
            texts = [rnd[c] for c in ("A", "B", "AB")]
            expected += sum(texts[i] != texts[j] for i in range(3) for j in range(i + 1, 3))
    assert result.rows_out == expected > len(ok_rows)
    for row in result.dataset:
        assert row["score_chosen"] >= row["score_rejected"] and row["margin"] >= 0


def test_dpo_rejected_draft(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "dpo", PairOptions(rejected="draft"))
    changed = [r for r in ok_rows if r[col.DRAFT] != r[col.REFINED]]
    assert result.rows_out == len(changed) > 0
    assert result.dropped[SAME_TEXT] == len(ok_rows) - len(changed)
    for row, src in zip(result.dataset, changed, strict=True):
        assert row["rejected"][0]["content"] == src[col.DRAFT]
        assert row["chosen"][0]["content"] == src[col.REFINED]
        assert (row["margin"] is None) == (row["score_chosen"] is None)


def _round(a: str, b: str, ab: str, scores: dict[str, int], winner: str) -> dict[str, Any]:
    vote = {"parsed": True}
    return {"A": a, "B": b, "AB": ab, "critique": "1. vague", "no_flaws": False, "fail_safe": False,
            "votes": [vote, vote, vote], "scores": scores, "winner": winner}


HAND_ROW = {
    "prompt": "Say hi.", col.STATUS: col.STATUS_OK, col.DRAFT: "a", col.REFINED: "b",
    col.PREFERENCE: {"chosen": "b", "rejected": "c2", "score_chosen": 7.0, "score_rejected": 5.0, "margin": 2.0},
    col.TRACE: {"variant": "paper", "rounds": [
        _round("a", "b", "c1", {"A": 4, "B": 7, "AB": 4}, "B"),
        _round("b", "b2", "c2", {"A": 7, "B": 6, "AB": 5}, "A"),
    ]},
}


def test_all_pairs_of_a_hand_built_trace() -> None:
    rows = dpo_rows(HAND_ROW, PairOptions(pairs="all"))
    assert isinstance(rows, list)
    got = [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows]
    # round 1: B(7) > A(4) = AB(4), paper ties go to A before AB
    assert got == [("b", "a", 3.0), ("b", "c1", 3.0), ("a", "c1", 0.0),
                   ("b", "b2", 1.0), ("b", "c2", 2.0), ("b2", "c2", 1.0)]
    assert dpo_rows(HAND_ROW, PairOptions(pairs="all", drop_ties=True, min_margin=2)) == [
        r for r in rows if r["margin"] >= 2]
    draft = dpo_rows(HAND_ROW, PairOptions(rejected="draft"))
    assert isinstance(draft, list)
    assert (draft[0]["rejected"][0]["content"], draft[0]["margin"]) == ("a", 3.0)  # both met in round 1


def test_kto_labels_of_a_hand_built_trace() -> None:
    one = kto_rows(HAND_ROW, PairOptions())
    assert isinstance(one, list)
    assert [(r["completion"][0]["content"], r["label"]) for r in one] == [("b", True), ("c2", False)]
    every = kto_rows(HAND_ROW, PairOptions(pairs="all"))
    assert isinstance(every, list)
    assert [(r["completion"][0]["content"], r["label"]) for r in every] == [
        ("b", True), ("a", False), ("c1", False), ("b2", False), ("c2", False)]


def test_reward_view(refined: Dataset) -> None:
    result = build_view(refined, "reward")
    assert result.rows_out > 0
    for row in result.dataset:
        assert set(row) == {"chosen", "rejected", "margin"}
        assert_messages(row["chosen"], {"user", "assistant"})
        assert_messages(row["rejected"], {"user", "assistant"})
        assert row["chosen"][:-1] == row["rejected"][:-1] and row["chosen"][-1]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
        assert isinstance(row["margin"], float) and row["margin"] >= 0


def test_kto_view(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "kto")
    labels = result.dataset["label"]
    assert labels.count(True) == labels.count(False) == build_view(refined, "dpo").rows_out
    for row in result.dataset:
        assert set(row) == {"prompt", "completion", "label"} and isinstance(row["label"], bool)
        assert_prompt(row["prompt"])
        assert_answer(row["completion"])
    winners = {r[col.REFINED] for r in ok_rows}
    assert {r["completion"][0]["content"] for r in result.dataset if r["label"]} <= winners


def test_critic_triples_one_per_changing_iteration(refined: Dataset, ok_rows: list[dict[str, Any]]) -> None:
    result = build_view(refined, "critic")
    changing = [(src, rnd) for src in ok_rows for rnd in src[col.TRACE]["rounds"] if rnd["winner"] != "A"]
    assert result.rows_out == len(changing) > 0
    assert result.dropped[NO_CHANGE] == sum(all(r["winner"] == "A" for r in s[col.TRACE]["rounds"]) for s in ok_rows)
    for row, (src, rnd) in zip(result.dataset, changing, strict=True):
        assert set(row) == {"prompt", "draft", "critique", "revision"}
        assert all(isinstance(v, str) and v for v in row.values())
        assert row == {"prompt": src["prompt"], "draft": rnd["A"], "critique": rnd["critique"],
                       "revision": rnd[rnd["winner"]]}
        assert row["draft"] != row["revision"]


def test_critic_conversational_form(refined: Dataset) -> None:
    triples = build_view(refined, "critic").dataset
    result = build_view(refined, "critic", CriticOptions(form="messages"))
    assert result.rows_out == len(triples)
    for row, triple in zip(result.dataset, triples, strict=True):
        assert set(row) == {"messages"}
        assert_messages(row["messages"], {"system", "user", "assistant"})
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        user = row["messages"][1]["content"]
        assert triple["prompt"] in user and triple["draft"] in user
        assert row["messages"][2]["content"] == triple["critique"]


def test_conversation_prompts_keep_their_system_message() -> None:
    chat = [[{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": p}] for p in PROMPTS[:3]]
    with FakeOpenAIServer(reasoning="reasoning") as srv:
        ds = refine_rows(srv.url, chat, "hadron", column="conversation", max_iterations=2)
    with pytest.raises(ConfigError, match="conversation"):
        build_view(ds, "sft")
    sft = build_view(ds, "sft", SftOptions(prompt_column="conversation", system_prompt="ignored"))
    assert [m["role"] for m in sft.dataset[0]["messages"]] == ["system", "user", "assistant"]
    assert sft.dataset[0]["messages"][0]["content"] == "You are a tutor."
    kto = build_view(ds, "kto", PairOptions(prompt_column="conversation"))
    assert kto.dataset[0]["prompt"] == chat[0]


def test_view_batch_works_in_a_plain_map(refined: Dataset) -> None:
    # batches of 2 start with error rows only: the features keep every column typed
    for view in VIEW_NAMES:
        out = refined.map(view_batch, batched=True, batch_size=2, remove_columns=refined.column_names,
                          fn_kwargs={"view": view}, features=view_features(view))
        assert out.to_list() == build_view(refined, view).dataset.to_list(), view


def test_bad_view_or_options() -> None:
    with pytest.raises(ConfigError, match="unknown view 'ppo'"):
        view_features("ppo")
    with pytest.raises(ConfigError, match="PairOptions"):
        view_features("dpo", SftOptions())


def test_load_refined_from_disk_files_and_output_folder(refined: Dataset, tmp_path: Path) -> None:
    expected = build_view(refined, "dpo").dataset.to_list()
    refined.save_to_disk(str(tmp_path / "out" / "refined"))
    refined.to_parquet(str(tmp_path / "refined.parquet"))
    refined.to_json(str(tmp_path / "refined.jsonl"))
    sources = [tmp_path / "out" / "refined", tmp_path / "out", tmp_path / "refined.parquet", tmp_path / "refined.jsonl"]
    for source in sources:
        loaded = load_refined(str(source))
        assert len(loaded) == len(refined)
        assert build_view(loaded, "dpo").dataset.to_list() == expected, source
    assert not list((tmp_path / "out" / "refined").glob("cache-*"))  # views never write into the input folder


def test_load_refined_rejects_what_is_not_refined(tmp_path: Path) -> None:
    Dataset.from_dict({"prompt": ["x"]}).to_json(str(tmp_path / "plain.jsonl"))
    with pytest.raises(InputError, match="not a refined dataset"):
        load_refined(str(tmp_path / "plain.jsonl"))
    with pytest.raises(InputError, match="no such file"):
        load_refined(str(tmp_path / "missing.parquet"))
