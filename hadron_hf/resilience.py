"""Rate limits, retries and fail-fast for any ``ChatModel``: aiolimiter and tenacity, not hand-rolled."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.errors import ConnectError, EndpointDownError, FatalBackendError, RateLimitError, RetryableError

log = logging.getLogger("hadron_hf")

MAX_SERVER_WAIT = 300.0


@dataclass
class CallStats:
    """Counters for one endpoint, read by progress displays and benchmarks."""

    started: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Limits:
    """Per-endpoint limits and retry budget."""

    max_concurrency: int = 64
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 6
    fail_fast_after: int = 8
    backoff_max: float = 30.0


class ResilientChatModel:
    """Wrap a ``ChatModel`` with a concurrency cap, RPM/TPM limits, retries and an endpoint cooldown.

    - Retries 429, 5xx, timeouts and connection errors with jittered exponential backoff, or exactly the
      wait the server asked for (``Retry-After``).
    - A 429 cools the whole endpoint down, so a storm is not multiplied by every waiting call.
    - While the endpoint has never answered, a call that fails for good stops the job
      (``EndpointDownError``) after ``fail_fast_after`` such calls, or at once for a refused connection.
    - Errors that cannot succeed on retry (bad key, unknown model, request rejected) pass straight through.

    Build one per endpoint+model and event loop, and share it between every role using that endpoint.

    Args:
        inner: the backend.
        name: shown in error messages (endpoint and model, no secrets).
        limits: the limits and retry budget.
    """

    def __init__(self, inner: ChatModel, name: str, limits: Limits) -> None:
        self.inner = inner
        self.name = name
        self.limits = limits
        self.stats = CallStats()
        self._sem = asyncio.Semaphore(limits.max_concurrency)
        self._rpm = AsyncLimiter(limits.rpm, 60) if limits.rpm else None
        self._tpm = AsyncLimiter(limits.tpm, 60) if limits.tpm else None
        self._cool_until = 0.0
        self._fatal: FatalBackendError | None = None

    def __repr__(self) -> str:
        return f"ResilientChatModel({self.name!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    done = await self._attempt(messages, params)
        except FatalBackendError as exc:
            self._fatal = self._fatal or exc
            raise
        except RetryableError as exc:
            self._give_up(exc)
            raise
        self.stats.succeeded += 1
        self.stats.prompt_tokens += done.prompt_tokens
        self.stats.completion_tokens += done.completion_tokens
        return done

    async def _attempt(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        if self._fatal is not None:
            raise self._fatal
        loop = asyncio.get_running_loop()
        async with self._sem:
            while (delay := self._cool_until - loop.time()) > 0:
                await asyncio.sleep(delay)
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                needed = sum(len(m["content"]) for m in messages) / 4 + params.max_tokens
                await self._tpm.acquire(min(needed, self._tpm.max_rate))
            if self._fatal is not None:
                raise self._fatal
            self.stats.started += 1
            self.stats.in_flight += 1
            try:
                return await self.inner.chat(messages, params)
            except RateLimitError as exc:
                self.stats.rate_limited += 1
                pause = exc.retry_after if exc.retry_after is not None else 1.0
                self._cool_until = max(self._cool_until, loop.time() + min(pause, MAX_SERVER_WAIT))
                raise
            finally:
                self.stats.in_flight -= 1

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_SERVER_WAIT) + random.uniform(0, 0.1)
        if isinstance(exc, ConnectError) and self.stats.succeeded == 0:
            return random.uniform(0.05, 0.25)
        return float(wait_random_exponential(multiplier=0.25, max=self.limits.backoff_max)(state))

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retrying %s after %s (attempt %d)", self.name, type(exc).__name__, state.attempt_number)

    def _give_up(self, exc: RetryableError) -> None:
        self.stats.failed += 1
        never_answered = self.stats.succeeded == 0
        if never_answered and (isinstance(exc, ConnectError) or self.stats.failed >= self.limits.fail_fast_after):
            self._fatal = EndpointDownError(
                f"{self.name}: every call has failed and none has succeeded "
                f"({self.stats.failed} failed after {self.limits.max_retries} retries each); last error: {exc}"
            )
            raise self._fatal from None
