"""End to end on the real embedded model (SmolLM2-135M through llama.cpp), no server, no key."""

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.columns import OUTPUT_COLUMNS, OUTPUT_FEATURES

pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra (llama-cpp-python)")


@pytest.mark.parametrize("variant", ["paper", "hadron"])
def test_embedded_model_through_dataset_map(variant: str, cache_dir: str) -> None:
    cfg = AutoReasonConfig(
        model=ModelConfig(backend="llama_cpp", model="smollm2", n_threads=1),
        judges=2, max_iterations=1, max_tokens=48, judge_max_tokens=24, variant=variant, cache_dir=cache_dir,
    )
    ds = Dataset.from_dict({"prompt": ["Write a haiku about rust.", "What is 2 + 2?"]})
    out = ds.map(autoreason_map, batched=True, batch_size=2, fn_kwargs={"config": cfg})
    for name in OUTPUT_COLUMNS:
        assert out.features[name] == OUTPUT_FEATURES[name]
    for row in out:
        assert row["autoreason_status"] == "ok", row["autoreason_error"]
        assert row["draft"] and row["refined"]
        trace = row["autoreason_trace"]
        assert trace["iterations"] == 1 and trace["variant"] == variant
        for rnd in trace["rounds"]:
            for vote in rnd["votes"]:
                assert vote["parsed"] and vote["constrained"], vote
                assert sorted(vote["ranking"]) == ["A", "AB", "B"]
        assert row["autoreason_usage"]["completion_tokens"] > 0
