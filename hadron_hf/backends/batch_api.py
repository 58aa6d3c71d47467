"""The wire side of OpenAI's batch API (``/v1/files`` and ``/v1/batches``) over aiohttp, errors mapped to ours.

Shapes follow OpenAI's documentation: an input file holds JSONL lines ``{"custom_id", "method", "url",
"body"}``; output and error files hold ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}``; a batch object carries ``status``, ``output_file_id``, ``error_file_id`` and
``request_counts``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from hadron_hf.backends._http import DEFAULT_BASE_URL, read_completion, status_error
from hadron_hf.chat import Completion
from hadron_hf.errors import (
    BackendError,
    CallTimeoutError,
    ConnectError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
    RetryableError,
    ServerError,
)

OPENAI_URL = DEFAULT_BASE_URL
CHAT_PATH = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
QUEUE_FULL_WAIT = 60.0
"""Seconds to wait before submitting again after the provider refused a batch for its queue limit."""


@dataclass
class BatchState:
    """One batch as last polled: the provider's ``status`` and ``request_counts``."""

    batch_id: str
    status: str
    total: int
    completed: int = 0
    failed: int = 0

    def update(self, batch: Mapping[str, Any]) -> None:
        """Take the status and counts of a batch object."""
        self.status = str(batch.get("status") or self.status)
        counts = batch.get("request_counts") or {}
        self.total = int(counts.get("total") or self.total)
        self.completed = int(counts.get("completed") or 0)
        self.failed = int(counts.get("failed") or 0)


class BatchAPI:
    """Files and batches endpoints of one OpenAI-compatible server.

    Args:
        base_url: the server's ``/v1`` URL (``None``: the OpenAI API).
        api_key: the key; only ever sent as a header, never in reprs or errors.
        timeout: seconds per HTTP request (an upload of a large file needs more than a chat call).
    """

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float = 600.0) -> None:
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"BatchAPI({self.base_url!r})"

    def session(self) -> aiohttp.ClientSession:
        """A new session for this server (the caller closes it)."""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        return aiohttp.ClientSession(headers=headers, timeout=self._timeout)

    async def upload(self, session: aiohttp.ClientSession, jsonl: bytes) -> str:
        """Upload a batch input file; returns its id."""
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", jsonl, filename="hadron_hf-batch.jsonl", content_type="application/jsonl")
        found = await self._json(session, "POST", "/files", data=form)
        return str(found["id"])

    async def create(self, session: aiohttp.ClientSession, input_file_id: str,
                     completion_window: str) -> dict[str, Any]:
        """Create a chat-completions batch over an uploaded file; returns the batch object."""
        body = {"input_file_id": input_file_id, "endpoint": CHAT_PATH, "completion_window": completion_window,
                "metadata": {"client": "hadron_hf"}}
        return await self._json(session, "POST", "/batches", json=body)

    async def retrieve(self, session: aiohttp.ClientSession, batch_id: str) -> dict[str, Any]:
        """The batch object now."""
        return await self._json(session, "GET", f"/batches/{batch_id}")

    async def cancel(self, session: aiohttp.ClientSession, batch_id: str) -> dict[str, Any]:
        """Ask the server to cancel a batch; returns the batch object."""
        return await self._json(session, "POST", f"/batches/{batch_id}/cancel")

    async def content(self, session: aiohttp.ClientSession, file_id: str) -> str:
        """The text of a file (an output or error file)."""
        async with _request(session, "GET", f"{self.base_url}/files/{file_id}/content") as response:
            text = await response.text()
            if response.status >= 400:
                raise http_error(response.status, text, response.headers, self._key)
            return text

    async def find_batch(self, session: aiohttp.ClientSession, input_file_id: str,
                         max_pages: int = 20) -> dict[str, Any] | None:
        """The batch made from ``input_file_id``, searched newest first in the server's batch list."""
        after: str | None = None
        for _ in range(max_pages):
            params: dict[str, str | int] = {"limit": 100, **({"after": after} if after else {})}
            page = await self._json(session, "GET", "/batches", params=params)
            data = page.get("data") or []
            for batch in data:
                if batch.get("input_file_id") == input_file_id:
                    return dict(batch)
            if not page.get("has_more") or not data:
                return None
            after = str(data[-1]["id"])
        return None

    async def _json(self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with _request(session, method, self.base_url + path, **kwargs) as response:
            text = await response.text()
            if response.status >= 400:
                raise http_error(response.status, text, response.headers, self._key)
        try:
            found = json.loads(text)
        except ValueError:
            raise ServerError(f"the batch API sent a reply that is not JSON ({method} {path})") from None
        if not isinstance(found, dict):
            raise ServerError(f"the batch API sent an unexpected reply ({method} {path})")
        return found


class _request:
    """``session.request`` with connection errors and timeouts mapped to ours."""

    def __init__(self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> None:
        self._ctx = session.request(method, url, **kwargs)

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            return await self._ctx.__aenter__()
        except TimeoutError:
            raise CallTimeoutError("the batch API did not answer within the timeout") from None
        except aiohttp.ClientError as exc:
            raise ConnectError(f"cannot reach the batch API: {type(exc).__name__}") from None

    async def __aexit__(self, *exc: Any) -> None:
        await self._ctx.__aexit__(*exc)


def http_error(status: int, body: Any, headers: Mapping[str, str] | None = None,
               secret: str | None = None, where: str = "batch API") -> BackendError:
    """Our error for an HTTP status, mapped exactly as the live backend maps it (``_http.status_error``)."""
    raw = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
    return status_error(status, raw, headers or {}, where, secret)


def line_error(line: Mapping[str, Any], where: str = "batch API") -> BackendError:
    """Our error for an output- or error-file line that carries no successful response."""
    response = line.get("response")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        error = http_error(response["status_code"], response.get("body"), where=where)
    else:
        found = line.get("error")
        err: Mapping[str, Any] = found if isinstance(found, dict) else {}
        code, message = str(err.get("code") or "unknown"), str(err.get("message") or "no detail")
        if code == "model_not_found":
            return ModelNotFoundError(f"model not found in batch: {message}")
        if code.startswith("invalid") or code in {"context_length_exceeded", "bad_request"}:
            return RequestRejectedError(f"request rejected in batch ({code}): {message}")
        # batch_expired, batch_cancelled, server errors: the request never ran; it goes in the next batch.
        error = ServerError(f"request not done in batch ({code}): {message}")
    if isinstance(error, ServerError | RateLimitError):
        error.retry_after = 0.0  # retried through the next batch, which has its own wait
    return error


def completion_from_body(body: Any, fallback_model: str, where: str = "batch response") -> Completion:
    """A ``Completion`` from a chat-completions response body (a dict), read as the live backend reads it.

    Raises:
        ServerError: the body holds no usable answer.
    """
    if not isinstance(body, dict):
        raise ServerError("batch response has no chat-completions body")
    return read_completion(body, fallback_model, where)


def read_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of an output or error file, one a line (a torn line is skipped: it counts as not done)."""
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            yield line


def line_outcome(line: Mapping[str, Any], model: str, answered: dict[str, str],
                 where: str = "batch API") -> Completion | BackendError:
    """The answer or error of one output/error-file line; a good answer's body also goes into ``answered``."""
    response = line.get("response")
    if isinstance(response, dict) and response.get("status_code") == 200:
        try:
            done = completion_from_body(response.get("body"), model, where)
        except BackendError as exc:
            if isinstance(exc, RetryableError):
                exc.retry_after = 0.0
            return exc
        answered[str(line["custom_id"])] = json.dumps(response.get("body"), ensure_ascii=False)
        return done
    return line_error(line, where)


def batch_failure(batch: Mapping[str, Any]) -> BackendError:
    """The error for a batch the provider refused as a whole (``status == "failed"``, e.g. validation)."""
    errors = (batch.get("errors") or {}).get("data") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    code, message = str(first.get("code") or "unknown"), str(first.get("message") or "no detail")
    if code == "model_not_found":
        return ModelNotFoundError(f"model not found (batch validation): {message}")
    if "limit" in code:
        # The provider's queue is full (OpenAI: token_limit_exceeded): wait for batches ahead to finish.
        return RateLimitError(f"batch refused ({code}): {message}", retry_after=QUEUE_FULL_WAIT)
    return RequestRejectedError(f"batch refused ({code}): {message}")
