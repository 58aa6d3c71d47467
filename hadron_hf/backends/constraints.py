"""Constrained replies (``SamplingParams.choices``) in each form a server or decoder understands.

Pure functions, no I/O: the OpenAI-compatible backend merges ``request_fields`` into its request body and
reads the reply back through ``decode_reply``; the in-process llama.cpp backend compiles ``gbnf``.

Two shapes of constraint:

- ``choices`` alone: the reply is exactly one of the strings (a ranking-only judge).
- ``choices_after_text``: free text first (a judge's reasoning), then a newline and one of the strings as
  the last line. The free text is capped at ``reasoning_chars(params)`` characters, so the final line fits
  in ``max_tokens`` whatever the tokenizer (a token holds at least one character of plain text).

Which server takes which form (``ModelConfig.judge_constraint``):

====================  =====================================================  ==========================
mode                  request body                                           servers
====================  =====================================================  ==========================
``gbnf``              ``grammar``: a GBNF grammar                            llama.cpp ``llama-server``,
                                                                             ``llama_cpp.server``
``guided_choice``     ``guided_choice`` (``guided_regex`` when reasoning)    vLLM < 0.12
``guided_regex``      ``guided_regex``                                       vLLM < 0.12
``structured_outputs`` ``structured_outputs``: ``{"choice"|"regex": ...}``     vLLM >= 0.10
``json_schema``       ``response_format``: ``json_schema`` (strict)          OpenAI, Ollama, vLLM, SGLang
``json_object``       ``response_format``: ``json_object`` with ``schema``   ``llama_cpp.server``
``none``              nothing                                                anything else
====================  =====================================================  ==========================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hadron_hf.chat import Completion, Message, SamplingParams

MODES: tuple[str, ...] = ("auto", "gbnf", "guided_choice", "guided_regex", "structured_outputs", "json_schema",
                          "json_object", "none")
MAX_REASONING_CHARS = 1500
"""Upper bound on constrained free text (a bigger bound only grows the grammar; judges are told to be brief)."""
MIN_REASONING_CHARS = 16
"""Below this much room, a reasoning judge is constrained to the final line alone."""
_MARGIN = 4  # tokens kept spare beyond the final line: end-of-turn and a token that straddles the newline
# GBNF string literals understand these escapes; anything else below 0x20 goes in as \xHH.
_GBNF_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def resolve_mode(mode: str, base_url: str | None) -> str:
    """The concrete mode for an OpenAI-compatible endpoint: ``"auto"`` means ``"json_schema"`` for the
    OpenAI API itself (no ``base_url``) and ``"none"`` elsewhere."""
    if mode not in MODES:
        raise ValueError(f"unknown judge_constraint {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "auto":
        return "json_schema" if base_url is None else "none"
    return mode


def reasoning_chars(params: SamplingParams) -> int:
    """Characters of free text allowed before the final line (0: the final line alone).

    Every token carries at least one character of plain text, so ``max_tokens`` minus the longest final
    line (plus its newline and a small margin) bounds the text that can precede it.
    """
    if not params.choices_after_text or params.choices is None:
        return 0
    room = params.max_tokens - max(len(c) for c in params.choices) - 1 - _MARGIN
    return min(room, MAX_REASONING_CHARS) if room >= MIN_REASONING_CHARS else 0


def gbnf_literal(text: str) -> str:
    """Quote ``text`` as a GBNF string literal that matches it exactly."""
    out = [_GBNF_ESCAPES.get(c, f"\\x{ord(c):02X}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text]
    return '"' + "".join(out) + '"'


def gbnf(params: SamplingParams) -> str:
    """A llama.cpp GBNF grammar for ``params.choices``: one choice, or bounded text, a newline, one choice."""
    if params.choices is None:
        raise ValueError("a grammar needs SamplingParams.choices")
    choice = " | ".join(gbnf_literal(c) for c in dict.fromkeys(params.choices))
    room = reasoning_chars(params)
    if not room:
        return f"root ::= {choice}\n"
    # Any character but NUL, newlines included: a judge may reason over several lines.
    return f"root ::= (text \"\\n\")? choice\ntext ::= [^\\x00]{{1,{room}}}\nchoice ::= {choice}\n"


def regex(params: SamplingParams) -> str:
    """The same constraint as a regular expression (vLLM's ``guided_regex`` / ``structured_outputs``)."""
    if params.choices is None:
        raise ValueError("a regular expression needs SamplingParams.choices")
    choice = "(" + "|".join(re.escape(c) for c in dict.fromkeys(params.choices)) + ")"
    room = reasoning_chars(params)
    return f"([\\s\\S]{{1,{room}}}\\n)?{choice}" if room else choice


def json_schema(params: SamplingParams, bounded: bool = False) -> dict[str, Any]:
    """A JSON schema whose ``answer`` is one of the choices, after a ``reasoning`` string when reasoning.

    Args:
        params: the call's sampling settings.
        bounded: add ``maxLength`` to the reasoning (llama.cpp's schema grammar honours it; OpenAI's
            strict mode does not accept it).
    """
    if params.choices is None:
        raise ValueError("a JSON schema needs SamplingParams.choices")
    answer = {"type": "string", "enum": list(dict.fromkeys(params.choices))}
    properties: dict[str, Any] = {}
    room = reasoning_chars(params)
    if room:
        reasoning: dict[str, Any] = {"type": "string", "description": "brief reasoning before the answer"}
        if bounded:
            reasoning["maxLength"] = room
        properties["reasoning"] = reasoning
    properties["answer"] = answer
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def request_fields(params: SamplingParams, mode: str) -> dict[str, Any]:
    """The request-body fields that carry ``params``' constraint in ``mode`` (``{}`` when unconstrained).

    Args:
        params: the call's sampling settings; only ``choices`` and ``choices_after_text`` matter here.
        mode: a concrete mode (see ``resolve_mode``).
    """
    if params.choices is None or mode == "none":
        return {}
    if mode == "gbnf":
        return {"grammar": gbnf(params)}
    if mode == "guided_choice" and not reasoning_chars(params):
        return {"guided_choice": list(dict.fromkeys(params.choices))}
    if mode in ("guided_choice", "guided_regex"):
        return {"guided_regex": regex(params)}
    if mode == "structured_outputs":
        if reasoning_chars(params):
            return {"structured_outputs": {"regex": regex(params)}}
        return {"structured_outputs": {"choice": list(dict.fromkeys(params.choices))}}
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "ranking", "strict": True, "schema": json_schema(params)}}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": json_schema(params, bounded=True)}}
    raise ValueError(f"unknown judge_constraint {mode!r}; choose one of {', '.join(MODES)}")


def decode_reply(text: str, params: SamplingParams, mode: str) -> str:
    """The reply as plain text: a JSON reply (``json_schema``/``json_object``) becomes its reasoning, a
    newline and its answer; anything else (or JSON of another shape) comes back unchanged."""
    if params.choices is None or mode not in ("json_schema", "json_object"):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        return text
    reasoning = data.get("reasoning")
    return f"{reasoning.strip()}\n{data['answer']}" if isinstance(reasoning, str) and reasoning.strip() \
        else data["answer"]


def honoured(text: str, params: SamplingParams) -> bool:
    """Whether ``text`` satisfies the constraint: it is one of the choices, or (after text) its last line is."""
    if params.choices is None:
        return False
    if params.choices_after_text:
        return text.rsplit("\n", 1)[-1] in params.choices
    return text in params.choices


def chat_body(model: str, messages: Sequence[Message], params: SamplingParams, mode: str,
              extra_body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions request body of one call, live or in a batch: model, messages, sampling, the
    ranking constraint in ``mode`` (judges only), then ``extra_body``, which overrides what is built here."""
    body: dict[str, Any] = {"model": model, "messages": list(messages),
                            "temperature": params.temperature, "max_tokens": params.max_tokens}
    if params.seed is not None:
        body["seed"] = params.seed
    if params.choices is not None:
        body.update(request_fields(params, mode))
    body.update(extra_body)
    return body


def constrained_reply(done: Completion, params: SamplingParams, mode: str) -> Completion:
    """A judge's completion as plain text (see ``decode_reply``), marked ``constrained`` when the server was
    told to constrain it and the reply satisfies the constraint; other calls come back unchanged."""
    if params.choices is None:
        return done
    text = decode_reply(done.text, params, mode)
    return replace(done, text=text, constrained=mode != "none" and honoured(text, params))
