"""Prompt cells as chat messages: the one reading of a prompt shared by the tournament, the views and exports.

It sits at the bottom of the layers (it needs only the message type and the error tree), so that training-view
modules can read prompts without importing the tournament, the engine or a backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hadron_hf import columns as col
from hadron_hf.chat import Message
from hadron_hf.errors import ConfigError, InputError


def check_output_columns(input_columns: Iterable[str], overwrite: bool = False) -> None:
    """Refuse an input whose columns ``autoreason_map`` would overwrite (``draft``, ``refined``, ...).

    Args:
        input_columns: the input dataset's (or batch's) column names.
        overwrite: replace them anyway (``AutoReasonConfig.overwrite_columns``, ``--overwrite-columns``).

    Raises:
        ConfigError: naming the clashing columns and the two ways out.
    """
    clash = [name for name in input_columns if name in col.OUTPUT_COLUMNS]
    if clash and not overwrite:
        raise ConfigError(
            f"the input already has column(s) {clash}, which autoreason_map writes: they would be overwritten. "
            "Rename them (Dataset.rename_column), or set AutoReasonConfig(overwrite_columns=True) "
            "(--overwrite-columns) to replace them"
        )


def normalize_prompt(prompt: Any, max_chars: int) -> list[Message]:
    """Turn a prompt cell into chat messages ending with the user's last turn.

    Args:
        prompt: a string, or a list of ``{"role", "content"}`` messages.
        max_chars: the most characters the messages may hold together.

    Returns:
        The messages, cut after the last user message.

    Raises:
        InputError: missing, empty, wrongly typed or over-long prompt.
    """
    if prompt is None:
        raise InputError("prompt is missing (None)")
    if isinstance(prompt, str):
        messages: list[Message] = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence) and all(_is_message(m) for m in prompt):
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise InputError("prompt conversation has no user message")
        messages = messages[: users[-1] + 1]
    else:
        raise InputError(
            f"prompt must be a string or a list of {{'role', 'content'}} messages, got {type(prompt).__name__}"
        )
    if not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise InputError("prompt is empty")
    size = sum(len(m["content"]) for m in messages)
    if size > max_chars:
        raise InputError(f"prompt is {size} characters, over max_prompt_chars={max_chars}")
    return messages


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
