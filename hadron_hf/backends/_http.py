"""What every chat-completions transport shares: reading a reply, mapping an HTTP error into our error
tree, the waits a server asks for, and keeping keys out of messages.

Both transports (``openai.py`` over aiohttp, ``openai_sdk.py`` over the openai SDK) hand the raw status,
headers and body bytes here, so a reply or an error reads the same whichever sent it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hadron_hf.chat import Completion, split_reasoning
from hadron_hf.errors import (
    AuthenticationError,
    BackendError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where ``base_url=None`` sends requests."""

_DETAIL_CHARS = 300
_KEYLIKE = re.compile(r"\b(sk|hf|key)[-_][A-Za-z0-9_\-*.]{4,}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_DIVISOR = {"ms": 1000.0, "s": 1.0, "m": 1 / 60, "h": 1 / 3600}
_LIMIT_WORDS = re.compile(r"\b(requests|tokens)\s+per\s+(?:min|minute|day|hour)\b|\b([RT])P[MD]\b", re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    """Remove the key, and anything shaped like a key, from server text before it reaches a message."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def endpoint_label(model: str, base_url: str) -> str:
    """``model 'm' at http://host/v1``: the base URL without credentials or query (they may hold keys)."""
    parts = urlsplit(base_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"model {model!r} at {urlunsplit((parts.scheme, host, parts.path.rstrip('/'), '', ''))}"


def parse_duration(text: str) -> float | None:
    """Seconds in a reset duration: OpenAI's ``1s``, ``6m0s``, ``250ms``, or a plain number (``0``, ``1.5``).

    Returns:
        The seconds (``0.0`` for ``0``: the window resets now), or ``None`` when unreadable.
    """
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts:
        try:
            return max(0.0, float(text))
        except ValueError:
            return None
    return sum(float(n) / _DURATION_DIVISOR[unit] for n, unit in parts)


def _retry_after_header(value: str, now: float | None) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one came without a zone.
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_seconds(headers: Mapping[str, str], limit: str | None = None, now: float | None = None) -> float | None:
    """The wait a server asked for, in seconds.

    Read from ``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date), then the
    ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens`` durations. A ``0`` is returned as
    ``0.0`` ("no wait needed"); the retry layer still applies its own minimum backoff.

    Args:
        headers: the reply's headers (any case).
        limit: ``"requests"`` or ``"tokens"`` when the reply named the exhausted limit: that limit's reset
            is used; otherwise the longer of the two.
        now: the current time as a Unix timestamp, for HTTP dates (``None``: the clock).

    Returns:
        Seconds to wait, or ``None`` when the server did not say.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in lowered:
        found = _retry_after_header(lowered["retry-after"], now)
        if found is not None:
            return found
    resets = {name: parse_duration(lowered[f"x-ratelimit-reset-{name}"])
              for name in ("requests", "tokens") if f"x-ratelimit-reset-{name}" in lowered}
    if limit in resets and resets[limit] is not None:
        return resets[limit]
    waits = [w for w in resets.values() if w is not None]
    return max(waits) if waits else None


def exhausted_limit(body: Any, detail: str, headers: Mapping[str, str]) -> str | None:
    """Which limit a 429 says is used up: ``"requests"``, ``"tokens"`` or ``None`` when it does not say.

    OpenAI names it in ``error.type`` and in the message ("... on tokens per min (TPM) ..."); the
    ``x-ratelimit-remaining-*`` header at 0 says it too.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type") in ("requests", "tokens"):
        return str(error["type"])
    match = _LIMIT_WORDS.search(detail)
    if match:
        word = match.group(1) or match.group(2)
        return "tokens" if word.lower().startswith("t") else "requests"
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("tokens", "requests"):
        if lowered.get(f"x-ratelimit-remaining-{name}", "").strip() == "0":
            return name
    return None


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def error_detail(body: Any, raw: bytes) -> str:
    """The server's own words from an error body, whatever its shape.

    Understands ``{"error": {"message": ..., "metadata": {"raw": ...}}}`` (OpenAI, OpenRouter),
    ``{"error": "text"}`` (mlx_lm.server), ``{"detail": ...}`` (FastAPI) and ``{"message": ...}``; any other
    body is quoted as text.
    """
    words: str | None = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            words = error
        elif isinstance(error, dict):
            words = _words(error.get("message")) or _words(error.get("code"))
            metadata = error.get("metadata")
            upstream = _words(metadata.get("raw")) if isinstance(metadata, dict) else None
            if upstream and upstream not in (words or ""):
                provider = metadata.get("provider_name") if isinstance(metadata, dict) else None
                where = f" from {provider}" if provider else ""
                words = f"{words or 'provider error'} (upstream{where}: {upstream})"
        if words is None and "detail" in body:
            words = _fastapi_detail(body["detail"])
        if words is None:
            words = _words(body.get("message"))
    if words is None:
        words = raw.decode("utf-8", "replace").strip() or "no detail"
    words = " ".join(words.split())
    return words if len(words) <= _DETAIL_CHARS else words[: _DETAIL_CHARS - 3] + "..."


def _words(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _fastapi_detail(detail: Any) -> str | None:
    # FastAPI validation errors: [{"loc": ["body", "messages"], "msg": "field required", ...}, ...]
    if isinstance(detail, list) and all(isinstance(d, dict) and "msg" in d for d in detail):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d['msg']}".lstrip(": ") for d in detail)
    return _words(detail)


def status_error(status: int, raw: bytes, headers: Mapping[str, str], where: str,
                 secret: str | None) -> BackendError:
    """Map a non-2xx reply into our error tree, with the server's words and no key.

    Args:
        status: the HTTP status.
        raw: the reply body.
        headers: the reply headers.
        where: ``endpoint_label(...)``, put in front of the message.
        secret: the API key, removed from anything the server echoed.
    """
    body = _json_or_none(raw)
    detail = redact(error_detail(body, raw), secret)
    if status == 429:
        limit = exhausted_limit(body, detail, headers)
        return RateLimitError(f"{where}: rate limited (429): {detail}", retry_after_seconds(headers, limit))
    if status in (401, 403):
        return AuthenticationError(
            f"{where}: the server refused the API key ({status}): {detail}. Check the key "
            "(ModelConfig.api_key, or the environment variable named by ModelConfig.api_key_env)."
        )
    if status == 404:
        return ModelNotFoundError(f"{where}: model or endpoint not found (404): {detail}")
    if status in (408, 409) or status >= 500:
        return ServerError(f"{where}: server error ({status}): {detail}", retry_after_seconds(headers))
    return RequestRejectedError(f"{where}: request rejected ({status}): {detail}")


def parse_completion(raw: bytes, fallback_model: str, where: str, secret: str | None = None) -> Completion:
    """Read a chat-completions reply body into a ``Completion`` (see ``read_completion``).

    Raises:
        ServerError: the body is not JSON, or not a usable reply; retryable.
        RateLimitError: an error object inside an HTTP 200 with code 429.
    """
    data = _json_or_none(raw)
    if not isinstance(data, dict):
        raise ServerError(f"{where}: server sent a reply that is not a JSON object ({len(raw)} bytes)")
    return read_completion(data, fallback_model, where, secret)


def read_completion(data: Mapping[str, Any], fallback_model: str, where: str,
                    secret: str | None = None) -> Completion:
    """Read a decoded chat-completions reply (a live reply, or a batch output line's body).

    Reasoning comes from ``message.reasoning``, else ``message.reasoning_content``, else inline
    ``<think>`` blocks; a reply with null content and the whole answer in ``reasoning_content`` is read
    as that answer.

    Raises:
        ServerError: not a usable reply (no choices, no message, an error object inside an HTTP 200, an
            empty answer); retryable.
        RateLimitError: an error object inside an HTTP 200 with code 429.
    """
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        if data.get("error"):
            detail = redact(error_detail(data, b""), secret)
            error = data["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if code == 429:
                raise RateLimitError(f"{where}: rate limited (error inside an HTTP 200): {detail}")
            raise ServerError(f"{where}: server sent an error inside an HTTP 200: {detail}")
        raise ServerError(f"{where}: server reply has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        if isinstance(choice, dict) and "delta" in choice:
            raise ServerError(f"{where}: server sent a streaming chunk (choices[0].delta) instead of a whole reply")
        raise ServerError(f"{where}: server reply's first choice has no message")
    content = _text(message.get("content"))
    field_reasoning = message.get("reasoning")
    field_reasoning = field_reasoning if isinstance(field_reasoning, str) and field_reasoning else None
    reasoning = field_reasoning or _text(message.get("reasoning_content")) or None
    if not content.strip() and reasoning and not field_reasoning:
        # Some servers put the whole answer in reasoning_content and leave content null.
        content, reasoning = reasoning, None
    answer, inline = split_reasoning(content)
    if not answer:
        finish = choice.get("finish_reason")
        why = " (finish_reason 'length': max_tokens ran out)" if finish == "length" else ""
        raise ServerError(f"{where}: server returned an empty answer{why}")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text=answer,
        reasoning=reasoning or inline,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=str(data.get("model") or fallback_model),
    )


def _text(content: Any) -> str:
    """Message content as text: a string, ``None``, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
