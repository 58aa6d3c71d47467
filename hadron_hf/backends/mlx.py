"""In-process mlx-lm backend: a local MLX model folder behind the ``ChatModel`` protocol.

On Apple silicon this is the fast local path (Metal, unified memory). On Linux, ``mlx[cpu]`` runs the same
code on the CPU, which is how the tests exercise it. Like the llama.cpp backend, each ``MlxChatModel`` runs
every call on its own single worker thread, one after another: the model, its KV cache and the streaming
detokenizer are not safe to share between threads.

The alternative, with no in-process model at all, is ``mlx_lm.server`` behind the OpenAI-compatible
backend (``ModelConfig(backend="openai", base_url="http://127.0.0.1:8080/v1")``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hadron_hf.backends._worker import SerialWorker
from hadron_hf.backends.constraints import honoured
from hadron_hf.chat import Completion, Message, SamplingParams, split_reasoning
from hadron_hf.errors import ConfigError, FatalBackendError, ModelNotFoundError, RequestRejectedError, ServerError

if TYPE_CHECKING:
    import mlx.core as mx

__all__ = ["MlxChatModel"]

_INSTALL_HINT = 'install it with: pip install "hadron_hf[mlx]" (on Linux: pip install "mlx[cpu]" mlx-lm)'


class MlxChatModel:
    """An mlx-lm model run in-process (``mlx_lm.load`` and ``stream_generate``), one call at a time.

    The model loads on the first call, in the worker thread. One instance may be shared by any number of
    coroutines, and by successive event loops. Only local folders are loaded, never a Hub download: fetch
    one first, e.g. ``hf download mlx-community/Qwen2.5-0.5B-Instruct-4bit --local-dir models/qwen``.

    Args:
        model_path: a folder holding ``config.json``, ``*.safetensors`` and a tokenizer with a chat template.
        model_name: the name reported in ``Completion.model``; defaults to the folder's name.

    Raises:
        ConfigError: ``mlx`` or ``mlx-lm`` is not installed.

    Example:
        >>> chat_model = MlxChatModel("models/qwen")  # doctest: +SKIP
        >>> done = await chat_model.chat([{"role": "user", "content": "Hi"}], SamplingParams())  # doctest: +SKIP
    """

    def __init__(self, model_path: str | os.PathLike[str], model_name: str | None = None) -> None:
        # mlx-lm depends on mlx only on macOS: on Linux both must be there.
        missing = [name for name in ("mlx", "mlx_lm") if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"the mlx backend needs {' and '.join(missing)}; {_INSTALL_HINT}")
        self.model_path = os.fspath(model_path)
        self.model = model_name or Path(self.model_path).name
        self._worker = SerialWorker("mlx-lm")
        # Touched only from the worker thread, so they need no lock.
        self._model: Any = None
        self._tokenizer: Any = None
        self._context: int | None = None

    def __repr__(self) -> str:
        return f"MlxChatModel(model={self.model!r}, model_path={self.model_path!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer ``messages`` on the worker thread, after any calls already queued on this instance.

        Args:
            messages: the conversation, rendered with the tokenizer's chat template.
            params: sampling settings. ``seed`` makes the call repeatable. With ``choices`` set, a logits
                processor lets only the tokens of those strings through, and ``max_tokens`` is raised, if
                needed, so that the longest choice fits. With ``choices_after_text`` too, the reply is
                free text until its last line starts like a choice (or the tokens left are just enough
                for one), and that line is then completed to a choice.

        Returns:
            The completion; ``constrained`` is true when ``choices`` was set and the reply satisfies it.

        Raises:
            RequestRejectedError: the chat template refused the messages, or the prompt exceeds the
                model's context.
            ModelNotFoundError: ``model_path`` is not a folder.
            FatalBackendError: the folder is not a model mlx-lm can load, or it has no chat template.
            ServerError: mlx failed while generating.
        """
        return await self._worker.run(self._chat_sync, list(messages), params)

    def close(self) -> None:
        """Wait for queued calls, then free the model; a later call loads it again."""
        self._worker.close(self._unload)

    def _unload(self) -> None:
        import mlx.core as mx

        self._model, self._tokenizer, self._context = None, None, None
        mx.clear_cache()

    def _load(self) -> tuple[Any, Any]:
        if self._model is not None:
            return self._model, self._tokenizer
        folder = Path(self.model_path)
        # mlx_lm.load treats a missing path as a Hub repo id and downloads it: never let it get that far.
        if not folder.is_dir():
            raise ModelNotFoundError(f"no mlx-lm model folder at {self.model_path}")
        from mlx_lm import load

        try:
            model, tokenizer = load(str(folder))[:2]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise FatalBackendError(f"mlx-lm could not load {self.model_path}: {exc}") from exc
        if not tokenizer.has_chat_template:
            raise FatalBackendError(f"the tokenizer in {self.model_path} has no chat template; use an instruct model")
        args = getattr(model, "args", None)
        self._context = getattr(args, "max_position_embeddings", None)
        self._model, self._tokenizer = model, tokenizer
        return model, tokenizer

    def _prompt(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        from jinja2 import TemplateError

        try:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except (ValueError, TemplateError) as exc:
            raise RequestRejectedError(f"the chat template rejected these messages: {exc}") from exc
        if self._context is not None and len(ids) >= self._context:
            raise RequestRejectedError(f"prompt is {len(ids)} tokens, the model's context is {self._context}")
        return list(ids)

    def _chat_sync(self, messages: list[Message], params: SamplingParams) -> Completion:
        from mlx_lm import stream_generate

        model, tokenizer = self._load()
        prompt = self._prompt(tokenizer, messages)
        max_tokens = params.max_tokens
        processors = []
        if params.choices is not None:
            allowed = [tokenizer.encode(c, add_special_tokens=False) for c in dict.fromkeys(params.choices)]
            tail = max(len(tokenizer.encode("\n" + c, add_special_tokens=False)) for c in params.choices)
            max_tokens = max(max_tokens, max(len(seq) for seq in allowed) + 1, tail + 2)
            eos = sorted(tokenizer.eos_token_ids)
            processors.append(_after_text_processor(tokenizer, params.choices, eos, len(prompt), max_tokens - tail - 1)
                              if params.choices_after_text else _choices_processor(allowed, eos, len(prompt)))
        text, completion_tokens = "", 0
        try:
            for step in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens,
                                        sampler=_sampler(params.temperature, params.seed),
                                        logits_processors=processors or None):
                text += step.text
                completion_tokens = step.generation_tokens
        except ValueError as exc:
            raise RequestRejectedError(f"mlx-lm rejected the request: {exc}") from exc
        except RuntimeError as exc:  # Metal or allocator failures
            raise ServerError(f"mlx failed while generating: {exc}") from exc
        if params.choices is not None and not params.choices_after_text:
            # The processor admits no <think> block, and stripping could break an exact match with a choice.
            answer, reasoning, constrained = text, None, honoured(text, params)
        elif params.choices is not None:
            (answer, reasoning), constrained = split_reasoning(text), honoured(text, params)
        else:
            (answer, reasoning), constrained = split_reasoning(text), False
        return Completion(answer, reasoning, prompt_tokens=len(prompt), completion_tokens=completion_tokens,
                          model=self.model, constrained=constrained)


def _sampler(temperature: float, seed: int | None) -> Callable[[mx.array], mx.array]:
    """Greedy at temperature 0, else categorical with a private PRNG key, so that a seed repeats a call
    without touching mlx's global random state (another model may be sampling on another thread)."""
    import mlx.core as mx

    if temperature <= 0:
        return lambda logprobs: mx.argmax(logprobs, axis=-1)
    key = [mx.random.key(seed)] if seed is not None else None

    def sample(logprobs: mx.array) -> mx.array:
        if key is None:
            return mx.random.categorical(logprobs * (1 / temperature))
        key[0], sub = mx.random.split(key[0])
        return mx.random.categorical(logprobs * (1 / temperature), key=sub)

    return sample


def _choices_processor(choices: list[list[int]], eos: list[int],
                       n_prompt: int) -> Callable[[mx.array, mx.array], mx.array]:
    """A logits processor that lets through only tokens continuing one of ``choices``, then end-of-turn."""
    import mlx.core as mx

    def process(tokens: mx.array, logits: mx.array) -> mx.array:
        done = cast(list[int], tokens[n_prompt:].tolist())
        n = len(done)
        allowed = {seq[n] for seq in choices if len(seq) > n and seq[:n] == done}
        if not allowed or any(seq == done for seq in choices):
            allowed.update(eos)
        mask = mx.full(logits.shape, -mx.inf, dtype=logits.dtype)
        mask[..., mx.array(sorted(allowed))] = 0
        return logits + mask

    return process


def _after_text_processor(tokenizer: Any, choices: Sequence[str], eos: list[int], n_prompt: int,
                          free_tokens: int) -> Callable[[mx.array, mx.array], mx.array]:
    """A logits processor for free text whose last line must be one of ``choices``.

    Free text may not end the reply. A line that starts with the choices' common prefix (``RANKING: ``)
    and still matches one of them is completed to a choice; after ``free_tokens`` tokens a newline and a
    choice are forced. Text-level, so it holds whatever tokens the model chose for the line's start.
    """
    import mlx.core as mx

    unique = list(dict.fromkeys(choices))
    common = _common_prefix(unique)

    def first_tokens(remainders: list[str]) -> set[int]:
        return {tokenizer.encode(r, add_special_tokens=False)[0] for r in remainders if r}

    def process(tokens: mx.array, logits: mx.array) -> mx.array:
        done = cast(list[int], tokens[n_prompt:].tolist())
        text = tokenizer.decode(done) if done else ""
        line = text.rsplit("\n", 1)[-1]
        matching = [c for c in unique if c.startswith(line)]
        if line in unique:
            allowed = set(eos)
        elif line and matching and line.startswith(common):
            allowed = first_tokens([c[len(line):] for c in matching])
        elif len(done) >= free_tokens:
            partial = line and matching
            allowed = first_tokens([c[len(line):] for c in matching] if partial
                                   else [(c if not text or text.endswith("\n") else "\n" + c) for c in unique])
        else:
            mask = mx.zeros(logits.shape, dtype=logits.dtype)
            mask[..., mx.array(eos)] = -mx.inf
            return logits + mask
        mask = mx.full(logits.shape, -mx.inf, dtype=logits.dtype)
        mask[..., mx.array(sorted(allowed))] = 0
        return logits + mask

    return process


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:n]
