"""The in-process mlx-lm backend, on a tiny randomly initialised Llama built here (no download).

Runs wherever ``mlx`` imports: Apple silicon, or Linux x86_64 with ``pip install "mlx[cpu]" mlx-lm``.
Elsewhere every test but the install-hint one is skipped, with the import error as the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.chat import SamplingParams
from hadron_hf.core.borda import ranking_choices
from hadron_hf.errors import ConfigError, FatalBackendError, ModelNotFoundError, RequestRejectedError


def _mlx_missing() -> str | None:
    try:
        import mlx.core  # noqa: F401
        import mlx_lm  # noqa: F401
        import tokenizers  # noqa: F401
    except Exception as exc:  # a wheel for another platform fails with OSError or ImportError
        return f'mlx is not usable here ({type(exc).__name__}: {exc}); pip install "mlx[cpu]" mlx-lm'
    return None


MISSING = _mlx_missing()
needs_mlx = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONTEXT = 4096
HELLO = [{"role": "user", "content": "Explain TCP slow start."}]


def build_tiny_llama(folder: Path, chat_template: str | None = TEMPLATE) -> Path:
    """A 2-layer, 32-wide Llama with random weights and a byte-level BPE tokenizer trained on a few words."""
    import mlx.core as mx
    from mlx_lm.models import llama
    from mlx_lm.utils import save_config, save_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(["Explain TCP slow start.", "RANKING: X1 > X2 > X3", "user assistant"], trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                        "pad_token": "<|endoftext|>", "model_max_length": CONTEXT}
    if chat_template is not None:
        tokenizer_config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    config = {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
              "num_attention_heads": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
              "vocab_size": tokenizer.get_vocab_size(), "tie_word_embeddings": True,
              "max_position_embeddings": CONTEXT}
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    save_model(folder, model)
    save_config(config, folder / "config.json")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    if MISSING is not None:
        pytest.skip(MISSING)
    return str(build_tiny_llama(tmp_path_factory.mktemp("mlx") / "tiny-llama"))


@needs_mlx
async def test_chat_renders_the_template_and_counts_tokens(tiny_model: str) -> None:
    from mlx_lm import load

    _, tokenizer = load(tiny_model)
    expected_prompt = len(tokenizer.apply_chat_template(HELLO, add_generation_prompt=True))
    from hadron_hf.backends.mlx import MlxChatModel

    chat_model = MlxChatModel(tiny_model, model_name="tiny")
    done = await chat_model.chat(HELLO, SamplingParams(temperature=0.7, max_tokens=12, seed=1))
    chat_model.close()
    assert (done.model, done.prompt_tokens, done.constrained, done.cached) == ("tiny", expected_prompt, False, False)
    assert 1 <= done.completion_tokens <= 12
    assert "MlxChatModel(model='tiny'" in repr(chat_model)


@needs_mlx
async def test_a_seed_repeats_a_call_and_greedy_is_deterministic(tiny_model: str) -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    chat_model = MlxChatModel(tiny_model)
    seeded = [await chat_model.chat(HELLO, SamplingParams(temperature=1.0, max_tokens=16, seed=7)) for _ in range(2)]
    greedy = [await chat_model.chat(HELLO, SamplingParams(temperature=0.0, max_tokens=16)) for _ in range(2)]
    chat_model.close()
    assert seeded[0] == seeded[1] and greedy[0] == greedy[1]
    assert seeded[0].model == "tiny-llama"


@needs_mlx
async def test_choices_force_a_well_formed_ranking_on_concurrent_calls(tiny_model: str) -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    chat_model = MlxChatModel(tiny_model)
    choices = ranking_choices()
    # max_tokens=2 is below any choice's length: the backend must raise it rather than cut the ranking.
    calls = [chat_model.chat(HELLO, SamplingParams(temperature=1.0, max_tokens=2, seed=s, choices=choices))
             for s in range(8)]
    done = await asyncio.gather(*calls)
    chat_model.close()
    assert all(d.constrained and d.text in choices and d.reasoning is None for d in done)
    assert len({d.text for d in done}) > 1  # sampling still chooses among the rankings


@needs_mlx
@pytest.mark.parametrize("max_tokens", [6, 40], ids=["no-room", "room-to-reason"])
async def test_reasoning_judges_write_free_text_then_a_ranking_line(tiny_model: str, max_tokens: int) -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    chat_model = MlxChatModel(tiny_model)
    choices = ranking_choices()
    done = [await chat_model.chat(HELLO, SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=s,
                                                        choices=choices, choices_after_text=True))
            for s in range(4)]
    chat_model.close()
    # Random weights never choose to stop: the free text runs to its budget, then the line is forced.
    assert all(d.constrained and d.text.splitlines()[-1] in choices for d in done)
    if max_tokens > 20:
        assert all(len(d.text.splitlines()[-1]) < len(d.text) for d in done)  # free text came first


@needs_mlx
async def test_close_frees_the_model_and_a_later_call_reloads_it(tiny_model: str) -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    chat_model = MlxChatModel(tiny_model)
    params = SamplingParams(temperature=0.0, max_tokens=8)
    first = await chat_model.chat(HELLO, params)
    chat_model.close()
    assert await chat_model.chat(HELLO, params) == first
    chat_model.close()


@needs_mlx
async def test_load_and_request_errors_are_ours(tiny_model: str, tmp_path: Path) -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    params = SamplingParams(max_tokens=4)
    with pytest.raises(ModelNotFoundError, match="no mlx-lm model folder"):
        await MlxChatModel(tmp_path / "absent").chat(HELLO, params)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FatalBackendError, match="could not load"):
        await MlxChatModel(tmp_path / "empty").chat(HELLO, params)
    plain = shutil.copytree(tiny_model, tmp_path / "plain")
    config = json.loads((plain / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(FatalBackendError, match="no chat template"):
        await MlxChatModel(plain).chat(HELLO, params)
    chat_model = MlxChatModel(tiny_model)
    with pytest.raises(RequestRejectedError, match=f"context is {CONTEXT}"):
        await chat_model.chat([{"role": "user", "content": "slow start " * CONTEXT}], params)
    with pytest.raises(ConfigError, match="choices is empty"):
        await chat_model.chat(HELLO, SamplingParams(choices=()))
    chat_model.close()


@needs_mlx
def test_autoreason_map_runs_on_the_mlx_backend(tiny_model: str) -> None:
    cfg = AutoReasonConfig(model=ModelConfig(backend="mlx", model="tiny", model_path=tiny_model), judges=3,
                           max_iterations=1, max_tokens=8, judge_max_tokens=8, cache=False, progress=False)
    ds = Dataset.from_dict({"prompt": ["Explain TCP slow start.", "Write a haiku about rust."]})
    out = ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg})
    for row in out:
        assert row["autoreason_status"] == "ok", row["autoreason_error"]
        (rnd,) = row["autoreason_trace"]["rounds"]
        assert [v["model"] for v in rnd["votes"]] == ["tiny"] * 3
        assert all(v["parsed"] and v["constrained"] for v in rnd["votes"])
        assert {t["role"] for t in row["reasoning_traces"]} == {"teacher", "critic", "author_b", "synthesizer", "judge"}


@pytest.mark.skipif(all(importlib.util.find_spec(n) for n in ("mlx", "mlx_lm")),
                    reason="mlx and mlx-lm are installed, so there is no missing-package error to see")
def test_without_mlx_lm_the_error_says_how_to_install() -> None:
    from hadron_hf.backends.mlx import MlxChatModel

    with pytest.raises(ConfigError, match=r"pip install .*mlx"):
        MlxChatModel("anywhere")
