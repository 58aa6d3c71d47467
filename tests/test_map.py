import pickle

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map, output_features
from hadron_hf.columns import OUTPUT_COLUMNS, OUTPUT_FEATURES
from hadron_hf.errors import ConfigError
from hadron_hf.inputs import normalize_prompt
from hadron_hf.testing import FakeOpenAIServer

PROMPTS = [f"Question {i}: explain topic number {i} in two sentences." for i in range(20)]


def make_config(url: str, cache_dir: str, **kw: object) -> AutoReasonConfig:
    return AutoReasonConfig(
        model=ModelConfig(base_url=url, model="m", api_key_env="HADRON_TEST_KEY"),
        judges=3, converge_k=2, max_iterations=10, seed=0, cache_dir=cache_dir, **kw,  # type: ignore[arg-type]
    )


def refine(ds: Dataset, cfg: AutoReasonConfig, **kw: object) -> Dataset:
    return ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg}, **{"batch_size": 8, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["paper", "hadron"])
def test_twenty_rows_end_to_end_every_column_typed(server: FakeOpenAIServer, cache_dir: str, variant: str) -> None:
    ds = Dataset.from_dict({"prompt": PROMPTS, "id": list(range(20))})
    out = refine(ds, make_config(server.url, cache_dir, variant=variant))
    assert out.column_names == ["prompt", "id", *OUTPUT_COLUMNS]
    for name in OUTPUT_COLUMNS:
        assert out.features[name] == OUTPUT_FEATURES[name], name
    assert out["id"] == list(range(20))
    for row in out:
        assert row["autoreason_status"] == "ok" and row["autoreason_error"] is None
        trace = row["autoreason_trace"]
        assert trace["variant"] == variant
        assert trace["iterations"] == len(trace["rounds"]) >= 1
        assert row["draft"].startswith("teacher answer")
        winners = [r["winner"] for r in trace["rounds"]]
        assert trace["converged"] == (winners[-2:] == ["A", "A"])
        assert trace["converged"] or trace["iterations"] == 10
        for rnd in trace["rounds"]:
            if rnd["no_flaws"]:
                assert variant == "hadron" and rnd["votes"] == [] and rnd["winner"] == "A"
                continue
            assert len(rnd["votes"]) == 3
            for vote in rnd["votes"]:
                assert sorted(vote["shown"]) == ["A", "AB", "B"] and vote["parsed"]
                assert sorted(vote["ranking"]) == ["A", "AB", "B"] and "RANKING:" in vote["raw"]
            points = (3 + 2 + 1) if variant == "paper" else (2 + 1 + 0)
            assert sum(rnd["scores"].values()) == 3 * points
        pref = row["preference"]
        assert pref["chosen"] == row["refined"]
        if pref["rejected"] is not None:
            assert pref["rejected"] != pref["chosen"]
        if pref["margin"] is not None:
            assert pref["margin"] == pref["score_chosen"] - pref["score_rejected"] >= 0
        usage = row["autoreason_usage"]
        assert usage["calls"] == len(row["reasoning_traces"]) and usage["prompt_tokens"] > 0
        assert {t["role"] for t in row["reasoning_traces"]} >= {"teacher", "critic"}


def test_readme_example_call(server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = AutoReasonConfig(
        model=ModelConfig(base_url=server.url, model="m", api_key_env="OPENAI_API_KEY"),
        judges=3, converge_k=2, max_iterations=10, variant="paper", seed=0, cache_dir=cache_dir,
    )
    ds = Dataset.from_dict({"prompt": ["Explain TCP slow start.", "Write a haiku about rust."]})
    out = ds.map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})
    assert out["autoreason_status"] == ["ok", "ok"]


def test_bad_rows_get_errors_and_the_batch_finishes(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"prompt": [None, "", "   ", "fine prompt", "x" * 500, "another fine one"]})
    out = refine(ds, make_config(server.url, cache_dir, max_prompt_chars=400), batch_size=3)
    assert out["autoreason_status"] == ["error", "error", "error", "ok", "error", "ok"]
    errors = out["autoreason_error"]
    assert "missing" in errors[0] and "empty" in errors[1] and "empty" in errors[2]
    assert "500 characters" in errors[4]
    assert out["refined"][0] is None and out["refined"][3]
    assert out.features["autoreason_error"] == OUTPUT_FEATURES["autoreason_error"]


def test_first_batch_all_ok_then_errors_keeps_types(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"prompt": ["good one", "good two", None, None]})
    out = refine(ds, make_config(server.url, cache_dir), batch_size=2)
    assert out["autoreason_status"] == ["ok", "ok", "error", "error"]


def test_chat_message_prompts_and_wrong_types() -> None:
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "old answer"}]
    assert normalize_prompt(msgs, 100) == msgs[:2]
    for bad, words in [(42, "got int"), ([{"role": "assistant", "content": "a"}], "no user message"),
                       ([{"role": "user"}], "got list")]:
        with pytest.raises(ValueError, match=words):
            normalize_prompt(bad, 100)


def test_message_list_column(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"messages": [[{"role": "user", "content": "Say hi."}], [{"role": "user", "content": ""}]]})
    out = refine(ds, make_config(server.url, cache_dir, prompt_column="messages"))
    assert out["autoreason_status"] == ["ok", "error"]


def test_missing_prompt_column_is_a_clear_error(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"question": ["q"]})
    with pytest.raises(ConfigError, match=r"'prompt' is not in the dataset; its columns are \['question'\]"):
        refine(ds, make_config(server.url, cache_dir))


def test_config_pickles_and_map_fingerprint_is_stable(server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = make_config(server.url, cache_dir)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    ds = Dataset.from_dict({"prompt": PROMPTS[:4]})
    first = refine(ds, cfg)
    requests = server.log.requests
    second = refine(ds, cfg)
    assert second._fingerprint == first._fingerprint
    assert server.log.requests == requests  # in-memory datasets recompute, but every call is a cache hit
    assert second.remove_columns("autoreason_usage").to_list() == first.remove_columns("autoreason_usage").to_list()
    assert all(u["cached_calls"] == u["calls"] > 0 for u in second["autoreason_usage"])


def test_num_proc_two(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"prompt": PROMPTS[:8]})
    out = refine(ds, make_config(server.url, cache_dir), batch_size=2, num_proc=2)
    assert out["autoreason_status"] == ["ok"] * 8


def test_same_seed_same_output_regardless_of_batching(server: FakeOpenAIServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ds = Dataset.from_dict({"prompt": PROMPTS[:6]})
    a = refine(ds, make_config(server.url, str(tmp_path / "a")), batch_size=6)
    b = refine(ds.select(range(5, -1, -1)), make_config(server.url, str(tmp_path / "b")), batch_size=1)
    assert a["refined"] == b["refined"][::-1]
    assert a["autoreason_trace"] == b["autoreason_trace"][::-1]


def test_iterable_dataset_map(server: FakeOpenAIServer, cache_dir: str) -> None:
    ds = Dataset.from_dict({"prompt": PROMPTS[:3]}).to_iterable_dataset()
    config = make_config(server.url, cache_dir)
    rows = list(ds.map(autoreason_map, batched=True, batch_size=2, fn_kwargs={"config": config}))
    assert [r["autoreason_status"] for r in rows] == ["ok"] * 3


def test_output_features_merge_input() -> None:
    ds = Dataset.from_dict({"prompt": ["a"], "n": [1]})
    feats = output_features(ds.features)
    assert list(feats)[:2] == ["prompt", "n"] and "refined" in feats


@pytest.mark.parametrize("column", ["draft", "refined", "preference", "reasoning_traces", "autoreason_status"])
def test_an_input_column_that_an_output_would_overwrite_is_an_error(column: str, server: FakeOpenAIServer,
                                                                     cache_dir: str) -> None:
    ds = Dataset.from_dict({"prompt": ["Why?"], column: ["kept"]})
    cfg = AutoReasonConfig(model=ModelConfig(base_url=server.url, model="m"), judges=2, max_iterations=1,
                           cache_dir=cache_dir, progress=False)
    with pytest.raises(ConfigError, match=rf"\['{column}'\].*overwrite_columns=True"):
        ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg})
    assert server.log.requests == 0
    out = ds.map(autoreason_map, batched=True,
                 fn_kwargs={"config": cfg.model_copy(update={"overwrite_columns": True})})
    assert out[0]["autoreason_status"] == "ok"
