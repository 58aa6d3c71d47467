"""The MLX LoRA export: a seeded split by prompt, written as an ``mlx_lm.lora --data`` folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map, cli
from hadron_hf.errors import ConfigError, InputError
from hadron_hf.export.mlx_lora import SPLITS, prompt_key, split_rows, write_mlx_dataset
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views import SftOptions

ROOT = Path(__file__).resolve().parent.parent
# 20 distinct prompts; two of them asked twice (their rows must share a split), and one bad row.
PROMPTS = [f"Explain topic {i} briefly." for i in range(20)] + ["Explain topic 3 briefly.",
                                                                   "Explain topic 7 briefly.", None]
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def conversation(i: int, answer: str = "a") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"prompt {i}"}, {"role": "assistant", "content": answer}]}


def read(folder: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]
            if (folder / f"{name}.jsonl").exists() else [] for name in SPLITS}


@pytest.fixture
def refined(server: FakeOpenAIServer, cache_dir: str) -> Dataset:
    cfg = AutoReasonConfig(model=ModelConfig(base_url=server.url, model="m", api_key_env=None), judges=3,
                           max_iterations=2, cache_dir=cache_dir, progress=False)
    ds = Dataset.from_dict({"prompt": PROMPTS})
    return ds.map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})


def test_the_split_is_seeded_by_prompt_and_ignores_row_order() -> None:
    rows = [conversation(i) for i in range(100)]
    first = split_rows(rows, seed=3)
    assert [len(first[n]) for n in SPLITS] == [80, 10, 10]
    assert split_rows(rows, seed=3) == first
    shuffled = split_rows(list(reversed(rows)), seed=3)
    assert {n: sorted(map(prompt_key, shuffled[n])) for n in SPLITS} == {
        n: sorted(map(prompt_key, first[n])) for n in SPLITS}
    assert split_rows(rows, seed=4)["valid"] != first["valid"]
    assert [len(p) for p in split_rows(rows, (0.6, 0.2, 0.2)).values()] == [60, 20, 20]
    assert [len(p) for p in split_rows(rows, (8, 1, 1)).values()] == [80, 10, 10]


@pytest.mark.parametrize(("n", "ratios", "sizes"), [
    (3, (0.8, 0.1, 0.1), [1, 1, 1]),
    (4, (0.8, 0.1, 0.1), [2, 1, 1]),
    (7, (0.8, 0.1, 0.1), [5, 1, 1]),
    (2, (0.5, 0.5, 0.0), [1, 1, 0]),
    (5, (0.1, 0.9, 0.0), [1, 4, 0]),
], ids=["3-rows", "4-rows", "7-rows", "no-test", "train-at-least-one"])
def test_small_inputs_fill_every_split_asked_for(n: int, ratios: tuple[float, ...], sizes: list[int]) -> None:
    parts = split_rows([conversation(i) for i in range(n)], ratios)
    assert [len(parts[name]) for name in SPLITS] == sizes


def test_bad_ratios_and_too_few_prompts_are_refused() -> None:
    for bad in [(0.5, 0.5), (0.0, 0.5, 0.5), (0.8, -0.1, 0.3)]:
        with pytest.raises(ConfigError, match="ratios"):
            split_rows([conversation(i) for i in range(5)], bad)
    # two rows, one prompt: it cannot be in two splits
    with pytest.raises(InputError, match="1 distinct prompt"):
        split_rows([conversation(1, "x"), conversation(1, "y")])


def test_export_of_a_refined_dataset(refined: Dataset, tmp_path: Path) -> None:
    export = write_mlx_dataset(refined, tmp_path / "mlx", seed=0)
    parts = read(tmp_path / "mlx")
    assert export.rows == {n: len(parts[n]) for n in SPLITS} == {"train": 18, "valid": 2, "test": 2}
    assert export.prompts == {"train": 16, "valid": 2, "test": 2}
    assert export.rows_in == len(PROMPTS) and export.dropped == {"error row": 1}
    prompts_of = {n: {r["messages"][0]["content"] for r in parts[n]} for n in SPLITS}
    assert not prompts_of["train"] & prompts_of["valid"] and not prompts_of["train"] & prompts_of["test"]
    assert not prompts_of["valid"] & prompts_of["test"]
    answers = dict(zip(refined["prompt"], refined["refined"], strict=True))
    for name in SPLITS:
        for row in parts[name]:
            user, assistant = row["messages"]
            assert user["role"] == "user" and assistant == {"role": "assistant", "content": answers[user["content"]]}
    # the same call writes the same bytes; a stale split file from an earlier export goes away
    before = {n: (tmp_path / "mlx" / f"{n}.jsonl").read_bytes() for n in SPLITS}
    write_mlx_dataset(refined, tmp_path / "mlx", seed=0)
    assert {n: (tmp_path / "mlx" / f"{n}.jsonl").read_bytes() for n in SPLITS} == before
    write_mlx_dataset(refined, tmp_path / "mlx", ratios=(0.9, 0.1, 0.0))
    assert not (tmp_path / "mlx" / "test.jsonl").exists()
    with pytest.raises(ConfigError, match="messages"):
        write_mlx_dataset(refined, tmp_path / "x", options=SftOptions(form="prompt_completion"))


def _mlx_lm_missing() -> str | None:
    try:
        import mlx_lm.tuner.datasets  # noqa: F401
        import transformers  # noqa: F401
    except Exception as exc:  # a wheel for another platform fails with OSError or ImportError
        return f'mlx_lm is not importable here ({type(exc).__name__}: {exc}); pip install "mlx[cpu]" mlx-lm'
    return None


@pytest.mark.skipif(_mlx_lm_missing() is not None, reason=_mlx_lm_missing() or "")
def test_mlx_lm_loads_and_tokenizes_the_folder(refined: Dataset, tmp_path: Path) -> None:
    from mlx_lm.tuner.datasets import ChatDataset, load_dataset
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator(["Explain topic briefly.", "user assistant answer"], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", chat_template=TEMPLATE)
    folder = tmp_path / "mlx"
    assert cli.main(["recipe", "mlx-lora", _saved(refined, tmp_path), "--output", str(folder)]) == 0
    args = SimpleNamespace(data=str(folder), train=True, test=True, hf_dataset=False, mask_prompt=True)
    train, valid, test = load_dataset(args, tokenizer)
    assert [len(train), len(valid), len(test)] == [18, 2, 2]
    for part in (train, valid, test):
        assert isinstance(part, ChatDataset)
        for i in range(len(part)):
            tokens, offset = part.process(part[i])
            # the prompt mask ends where the assistant's answer starts
            assert 0 < offset < len(tokens)


def test_recipe_script_prints_the_split(refined: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("recipe_script_mlx_lora", ROOT / "recipes" / "mlx_lora.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = _saved(refined, tmp_path)
    assert module.main([saved, "--output", str(tmp_path / "a"), "--ratios", "0.5,0.25,0.25"]) == 0
    out = capsys.readouterr().out
    assert "train         12 rows      10 prompts" in out and "valid          5 rows       5 prompts" in out
    assert "1  error row" in out and "mlx_lm.lora --model MODEL --train --data" in out
    with pytest.raises(SystemExit):
        module.main([saved, "--ratios", "0.5,0.5"])
    assert "expected three shares" in capsys.readouterr().err


def _saved(refined: Dataset, tmp_path: Path) -> str:
    path = tmp_path / "refined"
    if not path.exists():
        refined.save_to_disk(str(path))
    return str(path)
