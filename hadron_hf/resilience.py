"""Rate limits, retries and fail-fast for any ``ChatModel``: aiolimiter and tenacity, not hand-rolled."""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.errors import ConnectError, EndpointDownError, FatalBackendError, RateLimitError, RetryableError
from hadron_hf.priority import PriorityGate

log = logging.getLogger("hadron_hf")

MAX_SERVER_WAIT = 300.0
"""The longest wait a server may impose through ``Retry-After`` (seconds); longer asks are capped."""

DEFAULT_RATE_LIMIT_PAUSE = 1.0
"""How long the endpoint cools down after a 429 that did not say how long to wait (seconds)."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class CallStats:
    """Counters for one endpoint, read by progress displays, benchmarks and tests."""

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
    """Per-endpoint limits and retry budget.

    Args:
        max_concurrency: calls in flight at once.
        rpm: requests per minute, enforced over windows of about one second (so a full minute's quota
            is never sent in one burst); ``None``: unlimited.
        tpm: tokens per minute (prompt estimate plus ``max_tokens``), over a one-minute window.
        max_retries: attempts after the first for 429, 5xx, timeouts and connection errors.
        fail_fast_after: this many calls in a row that fail for good, with no success in between,
            stop the job with ``EndpointDownError``.
        backoff_max: cap on one exponential-backoff wait (seconds).
    """

    max_concurrency: int = 64
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 6
    fail_fast_after: int = 8
    backoff_max: float = 30.0


def per_minute_limiter(per_minute: float) -> AsyncLimiter:
    """A leaky bucket admitting ``per_minute`` requests a minute, at most about one second's share at once.

    Returns:
        An ``AsyncLimiter`` whose capacity is at least 1.
    """
    period = max(1.0, 60.0 / per_minute)
    return AsyncLimiter(per_minute * period / 60.0, period)


class ResilientChatModel:
    """Wrap a ``ChatModel`` with a concurrency cap, RPM/TPM limits, retries and an endpoint cooldown.

    - At most ``max_concurrency`` calls are in progress at once; a call keeps its slot while it waits to
      retry. A speculative call (``SamplingParams.speculative``) waits for a slot behind every
      normal call (``hadron_hf.priority``).

    - Retries 429, 5xx, timeouts and connection errors with jittered exponential backoff, or the wait
      the server asked for (``Retry-After``, ``retry-after-ms``, ``x-ratelimit-reset-*``).
    - A 429 cools the whole endpoint down: no call to it starts until the pause is over, so a storm is
      not multiplied by every waiting call.
    - Fail fast: ``fail_fast_after`` calls in a row that exhaust their retries with no success in between
      stop the job (``EndpointDownError``); a refused connection does so at once while no call has ever
      succeeded. Waits in progress end early once the job is stopping.
    - Errors that cannot succeed on retry pass straight through: a rejected request fails its row, while
      a bad key or unknown model (``FatalBackendError``) also makes every later call fail at once.

    Build one per endpoint+model and event loop, and share it between every role using that endpoint.

    Args:
        inner: the backend.
        name: shown in error messages (endpoint and model, no secrets).
        limits: the limits and retry budget.
        sleep: how to wait between attempts (tests pass a recorder to check the schedule).
    """

    def __init__(self, inner: ChatModel, name: str, limits: Limits, sleep: Sleep = asyncio.sleep) -> None:
        self.inner = inner
        self.name = name
        self.limits = limits
        self.stats = CallStats()
        self._sleep = sleep
        # Speculation (issue 21): normal calls take a freed slot before speculative ones.
        self._sem = PriorityGate(limits.max_concurrency)
        self._rpm = per_minute_limiter(limits.rpm) if limits.rpm else None
        self._tpm = AsyncLimiter(limits.tpm, 60) if limits.tpm else None
        self._cool_until = 0.0
        self._failed_in_a_row = 0
        self._fatal: FatalBackendError | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"ResilientChatModel({self.name!r})"

    @property
    def fatal(self) -> FatalBackendError | None:
        """The error that stopped this endpoint, if any."""
        return self._fatal

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer through the inner model, within the limits and with retries.

        Raises:
            RetryableError: the call still failed after ``max_retries`` retries (this row fails).
            RequestRejectedError: the server refused this request (this row fails).
            FatalBackendError: the job must stop (bad key, unknown model, endpoint down).
        """
        retrying = AsyncRetrying(
            sleep=self._pause,
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            # The slot is held through the backoff waits too: otherwise hundreds of queued first attempts
            # would go out before any call used up its retries, and a dead endpoint would be noticed late.
            async with self._sem.slot(params.speculative):
                async for attempt in retrying:
                    with attempt:
                        done = await self._attempt(messages, params)
        except FatalBackendError as exc:
            self._stop(exc)
            raise
        except RetryableError as exc:
            self._give_up(exc)
            raise
        self.stats.succeeded += 1
        self._failed_in_a_row = 0
        self.stats.prompt_tokens += done.prompt_tokens
        self.stats.completion_tokens += done.completion_tokens
        return done

    async def _attempt(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        self._raise_if_stopped()
        loop = asyncio.get_running_loop()
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            needed = sum(len(m["content"]) for m in messages) / 4 + params.max_tokens
            await self._tpm.acquire(min(needed, self._tpm.max_rate))
        # Checked last, right before sending: a 429 may have arrived while this call waited above.
        while (delay := self._cool_until - loop.time()) > 0:
            await self._pause(delay)
            self._raise_if_stopped()
        self._raise_if_stopped()
        self.stats.started += 1
        self.stats.in_flight += 1
        try:
            return await self.inner.chat(messages, params)
        except RetryableError as exc:
            self._cool_down(exc, loop.time())
            raise
        finally:
            self.stats.in_flight -= 1

    def _cool_down(self, exc: RetryableError, now: float) -> None:
        if isinstance(exc, RateLimitError):
            self.stats.rate_limited += 1
            pause = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
        elif exc.retry_after is not None:
            pause = exc.retry_after
        else:
            return
        until = now + min(pause, MAX_SERVER_WAIT)
        if until > self._cool_until:
            log.info("%s asked to wait %.2f s (%s); pausing every call to it", self.name, pause, type(exc).__name__)
            self._cool_until = until

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the endpoint is stopped meanwhile (the job is over anyway)."""
        if self._stopping.is_set():
            return
        nap = asyncio.ensure_future(self._sleep(seconds))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({nap, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            stop.cancel()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_SERVER_WAIT) + random.uniform(0, 0.1)
        if isinstance(exc, ConnectError) and self.stats.succeeded == 0:
            # Nothing has ever answered: probe quickly so a dead endpoint is reported within a second.
            return random.uniform(0.05, 0.25)
        return float(wait_random_exponential(multiplier=0.25, max=self.limits.backoff_max)(state))

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retrying %s after %s (attempt %d)", self.name, type(exc).__name__, state.attempt_number)

    def _give_up(self, exc: RetryableError) -> None:
        self.stats.failed += 1
        self._failed_in_a_row += 1
        never_answered = self.stats.succeeded == 0
        refused = never_answered and isinstance(exc, ConnectError)
        if not refused and self._failed_in_a_row < self.limits.fail_fast_after:
            log.warning("%s: a call failed after %d retries: %s", self.name, self.limits.max_retries, exc)
            return
        since = "none has ever succeeded" if never_answered else "none succeeded in between"
        down = EndpointDownError(
            f"{self.name} looks down: {self._failed_in_a_row} call(s) in a row failed after "
            f"{self.limits.max_retries} retries each and {since}; last error: {exc}. Completed calls are "
            "cached: fix the endpoint and run the same map again to resume."
        )
        self._stop(down)
        raise down from None

    def reopen(self) -> None:
        """Let calls through again after an ``EndpointDownError`` stop (a fallback chain probing this endpoint).

        A stop for a wrong key or an unknown model stays: another try would fail the same way.
        """
        if isinstance(self._fatal, EndpointDownError):
            self._fatal = None
            self._failed_in_a_row = 0
            self._stopping = asyncio.Event()

    def _stop(self, exc: FatalBackendError) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("stopping calls to %s: %s", self.name, exc)
        self._stopping.set()

    def _raise_if_stopped(self) -> None:
        if self._fatal is not None:
            # A copy per caller: one exception object raised from many tasks would pile up tracebacks.
            raise copy.copy(self._fatal) from None
