"""Retries and fail-fast for any ``ChatModel``, over an ``Endpoint``'s shared limits (aiolimiter, tenacity).

The limits themselves (adaptive concurrency window, rate budgets, probe, stop) live in ``endpoint.py``,
shared by every request shape calling one endpoint; this module is the per-call policy.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.engine.endpoint import (
    DEFAULT_RATE_LIMIT_PAUSE,
    MAX_SERVER_WAIT,
    CallStats,
    Endpoint,
    Limits,
    per_minute_limiter,
)
from hadron_hf.errors import (
    CallTimeoutError,
    ConnectError,
    EndpointDownError,
    FatalBackendError,
    RateLimitError,
    RequestRejectedError,
    RetryableError,
)

__all__ = ["DEFAULT_RATE_LIMIT_PAUSE", "MAX_SERVER_WAIT", "CallStats", "Limits", "ResilientChatModel",
           "per_minute_limiter"]

log = logging.getLogger("hadron_hf")

Sleep = Callable[[float], Awaitable[None]]


class ResilientChatModel:
    """Wrap a ``ChatModel`` with retries, fail-fast and its endpoint's shared limits.

    - The endpoint's first call goes alone (the probe); the others wait for its outcome.
    - Each attempt takes a slot of the endpoint's adaptive window (``endpoint.AdaptiveLimit``) and its
      rate budgets; a retry goes to the head of the queue, but gives its slot back while it waits, so a
      window cut by 429s holds for retries too. A speculative call (``SamplingParams.speculative``)
      waits behind every normal one.
    - Retries 429, 5xx, timeouts and connection errors with jittered exponential backoff, or the wait
      the server asked for (``Retry-After``, ``retry-after-ms``, ``x-ratelimit-reset-*``). A 429 holds
      the call that got it and cuts the endpoint's window; it pauses the whole endpoint only once the
      window is down to one call.
    - Fail fast: ``fail_fast_after`` calls in a row that exhaust their retries with no success in between
      stop the job (``EndpointDownError``); so does one call that exhausts them on connection errors or
      timeouts while no call to the endpoint succeeded (it stopped answering), and a refused connection
      while nothing has ever answered. Waits in progress end early once the job is stopping.
    - Errors that cannot succeed on retry pass straight through: a rejected request fails its row, while
      a bad key or unknown model (``FatalBackendError``) also makes every later call fail at once.

    Args:
        inner: the backend.
        name: shown in error messages (endpoint and model, no secrets).
        limits: the limits and retry budget (of a private endpoint, when ``endpoint`` is not given).
        sleep: how to wait between attempts (tests pass a recorder to check the schedule).
        endpoint: the shared endpoint state, when several request shapes share one endpoint.
    """

    def __init__(self, inner: ChatModel, name: str, limits: Limits | None = None, sleep: Sleep = asyncio.sleep,
                 *, endpoint: Endpoint | None = None) -> None:
        self.inner = inner
        self.name = name
        self.endpoint = endpoint or Endpoint(name, limits or Limits())
        self.limits = self.endpoint.limits
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ResilientChatModel({self.name!r})"

    @property
    def stats(self) -> CallStats:
        """The endpoint's counters."""
        return self.endpoint.stats

    @property
    def fatal(self) -> FatalBackendError | None:
        """The error that stopped this endpoint, if any."""
        return self.endpoint.fatal

    def reopen(self) -> None:
        """Let calls through again after an ``EndpointDownError`` stop (see ``Endpoint.reopen``)."""
        self.endpoint.reopen()

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer through the inner model, within the limits and with retries.

        Raises:
            RetryableError: the call still failed after ``max_retries`` retries (this row fails).
            RequestRejectedError: the server refused this request (this row fails).
            FatalBackendError: the job must stop (bad key, unknown model, endpoint down).
        """
        ep = self.endpoint
        answered_before = ep.stats.succeeded
        probing = await ep.enter()
        passed = False
        try:
            try:
                done = await self._attempt(messages, params, False)
            except RetryableError as first:
                # Only a call that needs a retry pays for tenacity's set-up (it inspects its callbacks on every
                # call): most calls succeed at once, and at hundreds of calls a second that cost is CPU on the
                # critical path. The first failure is handed to tenacity, so the schedule is the same.
                done = await self._retry(messages, params, first)
            passed = True
        except RequestRejectedError:
            passed = True  # the server took the key and the model: only this request is wrong
            raise
        except FatalBackendError as exc:
            if ep.job_stop.error is None:
                ep.stop(exc)
            raise
        except RetryableError as exc:
            self._give_up(exc, quiet=ep.stats.succeeded == answered_before)
            raise
        finally:
            if probing:
                ep.leave_probe(passed)
        ep.stats.succeeded += 1
        ep.failed_in_a_row = 0
        ep.stats.prompt_tokens += done.prompt_tokens
        ep.stats.completion_tokens += done.completion_tokens
        return done

    async def _retry(self, messages: Sequence[Message], params: SamplingParams, first: RetryableError) -> Completion:
        """Retry a call whose first attempt failed with ``first``, under the retry budget and wait policy."""
        retrying = AsyncRetrying(
            sleep=self._pause,
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        failed: RetryableError | None = first
        async for attempt in retrying:
            with attempt:
                if failed is not None:
                    exc, failed = failed, None
                    raise exc  # attempt 1, already made
                return await self._attempt(messages, params, True)
        raise AssertionError("tenacity ended without a result or an error")  # reraise=True never gets here

    async def _attempt(self, messages: Sequence[Message], params: SamplingParams, retry: bool) -> Completion:
        ep = self.endpoint
        ep.raise_if_stopped()
        await ep.window.acquire(first=retry, speculative=params.speculative)
        try:
            await ep.admit(messages, params, self._pause)
            ep.raise_if_stopped()
            epoch = ep.window.epoch
            ep.stats.started += 1
            ep.stats.in_flight += 1
            try:
                done = await self.inner.chat(messages, params)
            except RateLimitError as exc:
                ep.rate_limited(exc, epoch)
                raise
            finally:
                ep.stats.in_flight -= 1
            ep.window.grow()
            return done
        finally:
            ep.window.release()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the endpoint or job stops meanwhile (the job is over anyway)."""
        stopping = self.endpoint.stopping()
        if stopping.is_set():
            return
        nap = asyncio.ensure_future(self._sleep(seconds))
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({nap, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            stop.cancel()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = float(wait_random_exponential(multiplier=0.25, max=self.limits.backoff_max)(state))
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            # The server's wait is a floor: a reset of 0 ("x-ratelimit-reset-requests: 0") still backs off.
            return max(min(exc.retry_after, MAX_SERVER_WAIT), backoff) + random.uniform(0, 0.1)
        if isinstance(exc, ConnectError) and self.stats.succeeded == 0:
            # Nothing has ever answered: probe quickly so a dead endpoint is reported within a second.
            return random.uniform(0.05, 0.25)
        return backoff

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retrying %s after %s (attempt %d)", self.name, type(exc).__name__, state.attempt_number)

    def _give_up(self, exc: RetryableError, quiet: bool) -> None:
        """Count a call that used up its retries; stop the endpoint when it looks down.

        Args:
            exc: the last error.
            quiet: no call to the endpoint succeeded while this one was trying.
        """
        ep = self.endpoint
        ep.stats.failed += 1
        ep.failed_in_a_row += 1
        if ep.stopped:
            return
        never_answered = ep.stats.succeeded == 0
        unreachable = isinstance(exc, ConnectError | CallTimeoutError)
        refused = never_answered and isinstance(exc, ConnectError)
        silent = quiet and unreachable and not never_answered
        if not (refused or silent) and ep.failed_in_a_row < self.limits.fail_fast_after:
            log.warning("%s: a call failed after %d retries: %s", self.name, self.limits.max_retries, exc)
            return
        if silent:
            what = (f"it stopped answering: a call failed {self.limits.max_retries + 1} times and no call to it "
                    "succeeded meanwhile")
        else:
            since = "none has ever succeeded" if never_answered else "none succeeded in between"
            what = (f"{ep.failed_in_a_row} call(s) in a row failed after {self.limits.max_retries} retries each "
                    f"and {since}")
        down = EndpointDownError(
            f"{self.name} looks down: {what}; last error: {exc}. Completed calls are cached: fix the endpoint "
            "and run the same map again to resume."
        )
        ep.stop(down)
        raise down from None
