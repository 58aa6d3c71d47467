"""The opt-in transport through the official ``openai`` SDK (``ModelConfig(backend="openai_sdk")``).

Requests, replies and errors are built and read exactly as in ``openai.py`` (same body, same error
messages); only the sending differs: ``AsyncOpenAI`` with its own retries off. It costs several times
the client CPU per call of the default transport, so use it only for a provider that needs the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import openai

from hadron_hf.backends._http import DEFAULT_BASE_URL
from hadron_hf.backends.openai import OpenAIChatModel
from hadron_hf.errors import CallTimeoutError, ConnectError, ServerError

__all__ = ["OpenAISDKChatModel"]


class OpenAISDKChatModel(OpenAIChatModel):
    """``ChatModel`` over ``openai.AsyncOpenAI``; same arguments, body and errors as ``OpenAIChatModel``.

    The SDK also reads its own environment settings (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, ...).
    Create it inside the event loop that will use it.

    Args:
        model: model name sent with each request.
        base_url: the server's ``/v1`` URL (``None``: the OpenAI API).
        api_key: the key; kept only inside the SDK client, never in reprs or errors.
        timeout: seconds per call.
        extra_body: extra JSON fields for every request.
        max_concurrency: accepted for the same constructor; the SDK keeps its own connection pool (the
            endpoint's concurrency is enforced above the backend anyway, by ``resilience.py``).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 extra_body: Mapping[str, Any] | None = None, *, max_concurrency: int = 64,
                 judge_constraint: str = "auto") -> None:
        super().__init__(model, base_url, api_key, timeout, extra_body, max_concurrency=max_concurrency,
                         judge_constraint=judge_constraint)
        self._client = openai.AsyncOpenAI(base_url=base_url or DEFAULT_BASE_URL, api_key=api_key or "not-needed",
                                          timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"OpenAISDKChatModel(model={self.model!r}, base_url={self.base_url!r})"

    async def _send(self, body: dict[str, Any]) -> tuple[int, bytes, Mapping[str, str]]:
        fields = dict(body)
        model, messages = fields.pop("model"), fields.pop("messages")
        try:
            reply = await self._client.chat.completions.with_raw_response.create(
                model=model, messages=messages, extra_body=fields or None)
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.content, exc.response.headers
        except openai.APITimeoutError:
            raise CallTimeoutError(f"{self._where}: no reply within {self._timeout.total:g} s") from None
        except openai.APIConnectionError as exc:
            raise ConnectError(f"{self._where}: cannot reach the server: {self._describe(_root(exc))}") from None
        except (openai.APIError, json.JSONDecodeError) as exc:
            raise ServerError(f"{self._where}: unusable reply: {self._describe(exc)}") from None
        return reply.http_response.status_code, reply.http_response.content, reply.http_response.headers

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
