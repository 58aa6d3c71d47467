"""Any OpenAI-compatible chat-completions server (OpenAI, OpenRouter, vLLM, llama.cpp server, mlx_lm.server)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import openai

from hadron_hf.backends import constraints
from hadron_hf.chat import Completion, Message, SamplingParams, split_reasoning
from hadron_hf.errors import (
    AuthenticationError,
    BackendError,
    CallTimeoutError,
    ConnectError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)


class OpenAIChatModel:
    """``ChatModel`` over the official ``AsyncOpenAI`` client.

    The SDK's own retries are off (``max_retries=0``): ``resilience.py`` owns the one retry policy.
    Create it inside the event loop that will use it.

    Args:
        model: model name sent with each request.
        base_url: the server's ``/v1`` URL (``None``: the OpenAI API).
        api_key: the key; kept only inside the SDK client, never in reprs or errors.
        timeout: seconds per call.
        extra_body: extra JSON fields for every request.
    """

    def __init__(self, model: str, base_url: str | None, api_key: str | None, timeout: float = 120.0,
                 extra_body: Mapping[str, Any] | None = None, judge_constraint: str = "auto") -> None:
        self.model, self._constraint = model, constraints.resolve_mode(judge_constraint, base_url)
        self.base_url = base_url
        self._extra_body = dict(extra_body or {})
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        kwargs: dict[str, Any] = {"temperature": params.temperature, "max_tokens": params.max_tokens}
        if params.seed is not None:
            kwargs["seed"] = params.seed
        body = {**self._extra_body, **constraints.request_fields(params, self._constraint)}
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=list(messages),  # type: ignore[arg-type]
                extra_body=body or None, **kwargs,
            )
        except openai.APIError as exc:
            raise map_openai_error(exc, secret=self._client.api_key) from None
        except json.JSONDecodeError:
            raise ServerError("server sent a reply that is not valid JSON") from None
        if not response.choices:
            raise ServerError("server reply has no choices")
        done = _completion(response, self.model)
        text = constraints.decode_reply(done.text, params, self._constraint)
        return replace(done, text=text, constrained=self._constraint != "none" and constraints.honoured(text, params))


def _completion(response: Any, fallback_model: str) -> Completion:
    message = response.choices[0].message
    extra = message.model_extra or {}
    # Unknown fields arrive in model_extra; a future SDK may type them as attributes instead.
    field_reasoning = extra.get("reasoning") or getattr(message, "reasoning", None)
    content = message.content or ""
    reasoning = field_reasoning or extra.get("reasoning_content") or getattr(message, "reasoning_content", None)
    if not content.strip() and reasoning and not field_reasoning:
        # Some servers put the whole answer in reasoning_content and leave content null.
        content, reasoning = reasoning, None
    answer, inline = split_reasoning(content)
    reasoning = reasoning or inline
    if not answer:
        raise ServerError("server returned an empty answer")
    usage = response.usage
    return Completion(
        text=answer,
        reasoning=reasoning,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        model=response.model or fallback_model,
    )


def map_openai_error(exc: openai.APIError, secret: str | None = None) -> BackendError:
    """Translate an SDK exception into our error tree, keeping the server's words but never the key."""
    if isinstance(exc, openai.APITimeoutError):
        return CallTimeoutError("the server did not answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ConnectError(f"cannot reach the server: {_root_cause(exc)}")
    if isinstance(exc, openai.APIResponseValidationError):
        return ServerError("server sent a reply that does not match the chat-completions schema")
    if not isinstance(exc, openai.APIStatusError):
        return ServerError(f"unexpected reply: {type(exc).__name__}")
    status, detail = exc.status_code, redact(_detail(exc), secret)
    retry_after = retry_after_seconds(exc.response.headers)
    if status == 429:
        return RateLimitError(f"rate limited (429): {detail}", retry_after)
    if status in (401, 403):
        return AuthenticationError(
            f"the server refused the API key ({status}): {detail}. Check the key's environment variable "
            "(ModelConfig.api_key_env)."
        )
    if status == 404:
        return ModelNotFoundError(f"model or endpoint not found (404): {detail}")
    if status in (408, 409) or status >= 500:
        return ServerError(f"server error ({status}): {detail}", retry_after)
    return RequestRejectedError(f"request rejected ({status}): {detail}")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a server asked for, from ``retry-after-ms``, ``retry-after`` or ``x-ratelimit-reset-*``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return float(lowered["retry-after-ms"]) / 1000
        if "retry-after" in lowered:
            return float(lowered["retry-after"])
    except ValueError:
        pass
    waits = [_duration(lowered[k]) for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens") if k in lowered]
    found = [w for w in waits if w is not None]
    return max(found) if found else None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def _duration(text: str) -> float | None:
    """Parse OpenAI's reset durations such as ``1s``, ``6m0s`` or ``250ms``."""
    parts = _DURATION_PART.findall(text.strip())
    if not parts:
        try:
            return float(text)
        except ValueError:
            return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[unit] for n, unit in parts)


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    return (exc.message or "no detail")[:300]


_KEYLIKE = re.compile(r"\b(sk|hf|key)[-_][A-Za-z0-9_\-*.]{4,}")


def redact(text: str, secret: str | None) -> str:
    """Remove the key, and anything shaped like a key, from server text before it reaches a message."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
