"""The one seam between the tournament and any model: the ``ChatModel`` protocol and its value types.

It lives apart from ``tournament.py`` so that backends, the resilience wrapper and the cache can share
these types without importing the tournament logic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

from hadron_hf.errors import ConfigError


class Message(TypedDict):
    """One chat message, exactly as the OpenAI and TRL formats spell it."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one call.

    Args:
        temperature: sampling temperature.
        max_tokens: cap on generated tokens.
        seed: per-call seed; also makes otherwise identical calls distinct in the request cache.
        choices: when set, the reply must be exactly one of these strings. Backends that support
            constrained decoding (llama.cpp grammars, mlx logits processors, servers given a constraint
            by ``ModelConfig.judge_constraint``) enforce it and report ``constrained=True``.
        choices_after_text: with ``choices``, the reply may begin with free text (a judge's reasoning);
            its last line must then be one of ``choices``. The free text is bounded so that the final
            line always fits within ``max_tokens`` (see ``backends.constraints.reasoning_chars``).
        speculative: scheduling metadata only, never sent and not part of the request-cache key: the
            call was started before anyone knew it would be needed (``TournamentSettings.speculate``), so
            it waits behind every normal call for a concurrency slot (``engine.endpoint.AdaptiveLimit``).
    """

    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int | None = None
    choices: tuple[str, ...] | None = None
    choices_after_text: bool = False
    speculative: bool = False

    def __post_init__(self) -> None:
        if self.choices is not None and not self.choices:
            raise ConfigError("SamplingParams.choices is empty: no reply could satisfy it")
        if self.choices_after_text and self.choices is None:
            raise ConfigError("SamplingParams.choices_after_text needs choices: the final line it constrains")


@dataclass(frozen=True)
class Completion:
    """What a model answered.

    Args:
        text: the answer, with any ``<think>`` block removed.
        reasoning: the reasoning trace, when the model produced one.
        prompt_tokens: input tokens billed.
        completion_tokens: output tokens billed.
        model: the model that answered.
        constrained: the reply was produced under constrained decoding.
        cached: the reply came from the request cache (no call was sent).
    """

    text: str
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    constrained: bool = False
    cached: bool = False


class ChatModel(Protocol):
    """Anything that answers chat messages. Backends, the cache and the rate limiter all implement it."""

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer ``messages`` sampled with ``params``."""
        ...


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)


def split_reasoning(content: str) -> tuple[str, str | None]:
    """Split inline ``<think>…</think>`` reasoning out of ``content``.

    Handles several blocks and a lone closing ``</think>`` (the opening tag was in the prompt template).

    Returns:
        ``(answer, reasoning)``; ``reasoning`` is ``None`` when there was none.
    """
    parts = [m.strip() for m in _THINK.findall(content)]
    answer = _THINK.sub("", content)
    lower = answer.lower()
    if "</think>" in lower:
        cut = lower.rindex("</think>")
        parts.append(answer[:cut].replace("<think>", "").strip())
        answer = answer[cut + len("</think>") :]
    reasoning = "\n\n".join(p for p in parts if p)
    return answer.strip(), (reasoning or None)
