"""The in-process llama.cpp backend, against the real SmolLM2-135M model (no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "llama_cpp", reason='llama-cpp-python is not installed (pip install "hadron_hf[local]" or "hadron_hf[test]")'
)

from hadron_hf.backends.llama_cpp import LlamaCppChatModel, default_model_path  # noqa: E402
from hadron_hf.chat import Message, SamplingParams  # noqa: E402
from hadron_hf.errors import ConfigError, ModelNotFoundError, RequestRejectedError  # noqa: E402

RANKINGS = tuple("RANKING: " + " > ".join(p) for p in itertools.permutations(("X1", "X2", "X3")))
JUDGE: list[Message] = [
    {"role": "system", "content": "You judge answers. Reply with one line: RANKING: best > middle > worst."},
    {"role": "user", "content": "Question: what is 2+2?\nX1: 4\nX2: 5\nX3: four, since 2+2=4\nRank X1, X2, X3."},
]


def ask(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppChatModel]:
    # One thread: llama.cpp's threads spin-wait on each other, so on a busy 2-core box two threads run
    # the file about twice as slowly as one.
    chat_model = LlamaCppChatModel(n_threads=1)
    yield chat_model
    chat_model.close()


@pytest.fixture(scope="module")
def small_model() -> Iterator[LlamaCppChatModel]:
    """A 256-token context, so that context limits are cheap to reach."""
    chat_model = LlamaCppChatModel(n_ctx=256, n_threads=1, model_name="smol-256")
    yield chat_model
    chat_model.close()


def test_default_model_path_is_the_bundled_gguf() -> None:
    path = Path(default_model_path())
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


async def test_plain_answer_has_text_and_token_counts(model: LlamaCppChatModel) -> None:
    reply = await model.chat(ask("What is the capital of France?"), SamplingParams(temperature=0, max_tokens=24))
    assert reply.text.strip()
    assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 24
    assert reply.model == "SmolLM2-135M-Instruct.Q4_1"
    assert not reply.constrained and not reply.cached


async def test_same_seed_same_sample(model: LlamaCppChatModel) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=7)
    first = await model.chat(ask("Name a colour."), params)
    second = await model.chat(ask("Name a colour."), params)
    assert first.text == second.text


async def test_choices_constrain_every_reply(model: LlamaCppChatModel) -> None:
    # A high temperature and a max_tokens below the choices' length: the grammar must hold regardless.
    replies = [
        await model.chat(JUDGE, SamplingParams(temperature=1.5, max_tokens=4, seed=seed, choices=RANKINGS))
        for seed in range(8)
    ]
    assert all(r.text in RANKINGS and r.constrained for r in replies), [r.text for r in replies]


async def test_reasoning_judges_write_text_then_a_ranking_line(model: LlamaCppChatModel) -> None:
    # The paper variant's judges reason first: the grammar allows bounded text, then the ranking line.
    params = SamplingParams(temperature=1.0, max_tokens=48, seed=2, choices=RANKINGS, choices_after_text=True)
    reply = await model.chat(JUDGE[:1] + [{"role": "user", "content": JUDGE[1]["content"] + " Explain first."}],
                             params)
    assert reply.constrained and reply.text.splitlines()[-1] in RANKINGS
    assert reply.completion_tokens <= 48


async def test_choices_with_characters_that_need_escaping(model: LlamaCppChatModel) -> None:
    odd = 'say "hi" \\ then\n\ttab, é and 😀'
    reply = await model.chat(ask("Say something."), SamplingParams(temperature=1.0, seed=3, choices=(odd,)))
    assert reply.text == odd and reply.constrained


async def test_empty_choices_is_a_config_error(model: LlamaCppChatModel) -> None:
    with pytest.raises(ConfigError):
        await model.chat(ask("Hi"), SamplingParams(choices=()))


async def test_concurrent_calls_are_serialised_and_keep_the_loop_free(model: LlamaCppChatModel) -> None:
    prompts = ["Name a fruit.", "Name a planet.", "Name a river.", "Name a metal."]
    params = SamplingParams(temperature=0, max_tokens=16)
    alone = [(await model.chat(ask(p), params)).text for p in prompts]

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    together = await asyncio.gather(*(model.chat(ask(p), params) for p in prompts))
    ticking.cancel()
    # Interleaved calls on one llama.cpp context would corrupt each other; serialised ones match solo runs.
    assert [r.text for r in together] == alone
    assert ticks > 0, "the event loop was blocked while the model generated"


def test_instance_survives_successive_event_loops(model: LlamaCppChatModel) -> None:
    for _ in range(2):
        reply = asyncio.run(model.chat(ask("Say hi."), SamplingParams(temperature=0, max_tokens=8)))
        assert reply.text


async def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match=re.escape(str(missing))):
        await LlamaCppChatModel(missing).chat(ask("Hi"), SamplingParams(max_tokens=4))


async def test_prompt_longer_than_context_is_rejected(small_model: LlamaCppChatModel) -> None:
    with pytest.raises(RequestRejectedError, match=r"prompt is \d+ tokens, the model's context is 256"):
        await small_model.chat(ask("word " * 400), SamplingParams(max_tokens=8))


async def test_max_tokens_shrinks_to_fit_the_context(small_model: LlamaCppChatModel) -> None:
    reply = await small_model.chat(ask("Repeat: " + "ok " * 200), SamplingParams(temperature=0, max_tokens=48))
    assert reply.prompt_tokens > 256 - 48
    assert reply.prompt_tokens + reply.completion_tokens <= 256
    assert reply.model == "smol-256"
