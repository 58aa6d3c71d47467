"""Any OpenAI-compatible chat-completions server (OpenAI, OpenRouter, vLLM, llama.cpp server, mlx_lm.server),
spoken to directly over one aiohttp session.

The wire protocol is one JSON POST and one JSON reply, so no SDK sits on the hot path: per call the
client serialises one dict, sends it, and reads the reply with ``json.loads``. ``openai_sdk.py`` is the
opt-in transport through the official SDK; both read replies and errors with ``_http.py``.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from hadron_hf.backends import constraints
from hadron_hf.backends._http import (
    DEFAULT_BASE_URL,
    endpoint_label,
    parse_completion,
    redact,
    retry_after_seconds,
    status_error,
)
from hadron_hf.chat import Completion, Message, SamplingParams
from hadron_hf.errors import CallTimeoutError, ConfigError, ConnectError, ServerError

__all__ = ["OpenAIChatModel", "redact", "retry_after_seconds"]


class OpenAIChatModel:
    """``ChatModel`` over the chat-completions wire protocol, on one ``aiohttp.ClientSession``.

    The session is opened on the first call, in the running event loop, and serves only that loop; close
    it with ``aclose()``. There are no retries here: ``resilience.py`` owns the one retry policy. Every
    failure leaves as one of ``hadron_hf.errors``' types, naming the model and endpoint, never the key.

    Args:
        model: model name sent with each request.
        base_url: the server's ``/v1`` URL (``None``: the OpenAI API).
        api_key: the key, sent as ``Authorization: Bearer``; never in reprs or errors.
        timeout: seconds per call, connecting included.
        extra_body: extra JSON fields for every request (they override the ones built here).
        max_concurrency: most connections open at once (``ModelConfig.max_concurrency``).
        judge_constraint: how the server is told to force a ranking (``ModelConfig.judge_constraint``).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 extra_body: Mapping[str, Any] | None = None, *, max_concurrency: int = 64,
                 judge_constraint: str = "auto") -> None:
        self.model = model
        self._constraint = constraints.resolve_mode(judge_constraint, base_url)
        self.base_url = base_url
        self._extra_body = dict(extra_body or {})
        self._secret = api_key
        base = base_url or DEFAULT_BASE_URL
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base!r}")
        self._url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions"))
        self._where = endpoint_label(model, base)
        self._url_password = parts.password
        self._headers = {"Content-Type": "application/json"}
        if api_key and "@" not in parts.netloc:  # credentials in the URL are sent as basic auth instead
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_concurrency = max_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: weakref.finalize[..., None] | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r})"

    def _request_body(self, messages: Sequence[Message], params: SamplingParams) -> dict[str, Any]:
        """The JSON body of one call (``constraints.chat_body``, shared with the batch backend)."""
        return constraints.chat_body(self.model, messages, params, self._constraint, self._extra_body)

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Send one chat-completions request and read its reply.

        Raises:
            RetryableError: 429, 408/409/5xx, a timeout, a refused or dropped connection, or an unusable
                200 (bad JSON, no message, an error object inside it, an empty answer).
            RequestRejectedError: another 4xx (e.g. the context is too long).
            FatalBackendError: 401/403 (the key) or 404 (the model or URL).
        """
        status, raw, headers = await self._send(self._request_body(messages, params))
        if not 200 <= status < 300:
            raise status_error(status, raw, headers, self._where, self._secret)
        done = parse_completion(raw, self.model, self._where, self._secret)
        return constraints.constrained_reply(done, params, self._constraint)

    async def _send(self, body: dict[str, Any]) -> tuple[int, bytes, Mapping[str, str]]:
        """POST ``body``; returns the status, body bytes and headers, or raises one of our errors."""
        session = self._session if self._session is not None else self._open()
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError(f"{self!r} was opened in another event loop: build one per event loop")
        try:
            async with session.post(self._url, data=json.dumps(body).encode()) as reply:
                return reply.status, await reply.read(), reply.headers
        except TimeoutError:
            raise CallTimeoutError(f"{self._where}: no reply within {self._timeout.total:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectError(f"{self._where}: cannot reach the server: {self._describe(exc)}") from None
        except aiohttp.ClientResponseError as exc:  # the reply was not valid HTTP
            raise ServerError(f"{self._where}: malformed HTTP reply: {self._describe(exc)}") from None
        except aiohttp.ClientError as exc:
            raise ConnectError(f"{self._where}: request failed: {self._describe(exc)}") from None

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=self._max_concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
        # A model dropped without aclose() (Dataset.map drops its loop) still releases its sockets.
        self._finalizer = weakref.finalize(self, _close_now, self._session)
        return self._session

    def _describe(self, exc: BaseException) -> str:
        # A refused connection says so through the OS error it wraps, not aiohttp's wrapper name.
        cause = getattr(exc, "os_error", None) or exc
        text = redact(type(cause).__name__ + (f": {cause}" if str(cause) else ""), self._secret)
        return redact(text, self._url_password)

    async def aclose(self) -> None:
        """Close the session and its connections (call it in the loop that made the calls)."""
        session, self._session = self._session, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if session is not None:
            await session.close()


def _close_now(session: aiohttp.ClientSession) -> None:
    """Close a forgotten session's connections from a finalizer, where there is no loop to await on."""
    connector = session.connector
    if connector is not None and not connector.closed:
        # The synchronous half of ``connector.close()``; the public one schedules a task on the loop.
        connector._close()
