"""One endpoint's shared state in one job: limits, adaptive pressure (AIMD), the first-call probe and the stop.

Every request shape (``ModelConfig`` with its own ``extra_body``) that calls the same endpoint key shares
one ``Endpoint``; every endpoint of a job shares one ``JobStop``.

- **Adaptive pressure.** ``AdaptiveLimit`` is a concurrency window, as TCP's congestion window: a 429 cuts
  it multiplicatively (at most once per window of calls: the calls that were already in flight when it
  was cut do not cut it again), and every success grows it back by one slot, up to ``max_concurrency``.
  A configured ``rpm`` shrinks with it. Only when the window is down to one call does a 429 pause the
  endpoint for its ``Retry-After``: a burst of 429s converges to a pause, scattered ones never freeze it.
- **Probe.** The first call to an endpoint goes alone; the others wait for its outcome, so a wrong key,
  model or URL costs one request, not a wave.
- **Stop.** A fatal error stops the endpoint; ``JobStop`` stops every endpoint of the job. Either wakes
  every waiting call at once, and no new attempt starts.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from hadron_hf.chat import Message, SamplingParams
from hadron_hf.errors import FatalBackendError, RateLimitError

log = logging.getLogger("hadron_hf")

MAX_SERVER_WAIT = 300.0
"""The longest wait a server may impose through ``Retry-After`` (seconds); longer asks are capped."""

DEFAULT_RATE_LIMIT_PAUSE = 1.0
"""How long a 429 that did not say how long to wait pauses an endpoint whose window is down to one call."""

DECREASE = 0.5
"""The factor a 429 cuts the concurrency window by."""


class InterruptedJobError(FatalBackendError):
    """The user interrupted the job (Ctrl+C); completed calls are cached."""


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

    @classmethod
    def total(cls, parts: Iterable[CallStats]) -> CallStats:
        """The counters of ``parts`` summed (a job's, over its endpoints)."""
        total = cls()
        for part in parts:
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(part, name))
        return total


@dataclass(frozen=True)
class Limits:
    """Per-endpoint limits and retry budget.

    Args:
        max_concurrency: the most calls in flight at once (the adaptive window's ceiling).
        rpm: requests per minute, enforced over windows of about one second (so a full minute's quota
            is never sent in one burst); ``None``: unlimited.
        tpm: tokens per minute (prompt estimate plus ``max_tokens``), over a one-minute window.
        max_retries: attempts after the first for 429, 5xx, timeouts and connection errors.
        fail_fast_after: this many calls in a row that fail for good, with no success in between,
            stop the job with ``EndpointDownError``.
        backoff_max: cap on one exponential-backoff wait (seconds).
        probe: the first call goes alone and the others wait for its outcome (off for batch-API endpoints,
            where every call of a step travels in one upload anyway).
    """

    max_concurrency: int = 64
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 6
    fail_fast_after: int = 8
    backoff_max: float = 30.0
    probe: bool = True


def per_minute_limiter(per_minute: float) -> AsyncLimiter:
    """A leaky bucket admitting ``per_minute`` requests a minute, at most about one second's share at once.

    Returns:
        An ``AsyncLimiter`` whose capacity is at least 1.
    """
    period = max(1.0, 60.0 / per_minute)
    return AsyncLimiter(per_minute * period / 60.0, period)


def _copy(exc: BaseException) -> BaseException:
    # A copy per caller: one exception object raised from many tasks would pile up tracebacks.
    return copy.copy(exc)


class JobStop:
    """The stop shared by every endpoint of one job: once set, no new attempt starts anywhere."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.at: float | None = None
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously) when the job stops."""
        self._listeners.append(listener)

    def stop(self, exc: BaseException, now: float) -> None:
        """Stop the job with ``exc`` (the first stop wins); ``now`` is the loop clock, for the grace period."""
        if self.error is not None:
            return
        self.error, self.at = exc, now
        for listener in self._listeners:
            listener()

    def raise_if_stopped(self) -> None:
        """Raise a copy of the error that stopped the job, if it has stopped."""
        if self.error is not None:
            raise _copy(self.error) from None


class AdaptiveLimit:
    """A concurrency window with additive increase and multiplicative decrease; waiters are served in order.

    Speculative calls (``SamplingParams.speculative``: a next-round critique nobody may need) wait in a
    queue of their own, served only when no normal call waits, so they never delay a row's critical path.

    Args:
        cap: the ceiling (``max_concurrency``).
        decrease: the factor a cut multiplies the window by.
    """

    def __init__(self, cap: int, decrease: float = DECREASE) -> None:
        self.cap = cap
        self.window = float(cap)
        self.in_use = 0
        self.epoch = 0
        self.cuts = 0
        self._decrease = decrease
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._speculative: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"AdaptiveLimit({self.current}/{self.cap}, in use {self.in_use})"

    @property
    def current(self) -> int:
        """Calls allowed in flight now (at least one)."""
        return max(1, int(self.window))

    @property
    def scale(self) -> float:
        """The window as a share of its ceiling (a configured rate shrinks by the same share)."""
        return self.current / self.cap

    async def acquire(self, first: bool = False, speculative: bool = False) -> None:
        """Wait for a slot; ``first`` puts the caller at the head of its queue (a retry of a started call);
        ``speculative`` queues it behind every normal caller, even those that come later."""
        queue = self._speculative if speculative else self._waiters
        ahead = self._waiters or (speculative and self._speculative)
        if not ahead and self.in_use < self.current:
            self.in_use += 1
            return
        fut = asyncio.get_running_loop().create_future()
        if first:
            queue.appendleft(fut)
        else:
            queue.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # granted a slot, but the caller went away before using it
            else:
                with suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back."""
        self.in_use -= 1
        self._wake()

    def grow(self) -> None:
        """A call succeeded: one more slot, up to the ceiling."""
        if self.window < self.cap:
            self.window = min(float(self.cap), self.window + 1.0)
            self._wake()

    def cut(self, epoch: int) -> bool:
        """A call that started in ``epoch`` was told to slow down: cut the window once per epoch.

        Returns:
            Whether the window was cut (``False``: already cut for that epoch).
        """
        if epoch != self.epoch:
            return False
        self.epoch += 1
        self.cuts += 1
        self.window = max(1.0, self.window * self._decrease)
        return True

    def fail_waiters(self, make_error: Callable[[], BaseException]) -> None:
        """Wake every waiter with an error (the endpoint or the job stopped)."""
        for queue in (self._waiters, self._speculative):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_exception(make_error())

    def _wake(self) -> None:
        for queue in (self._waiters, self._speculative):  # normal callers first
            while queue and self.in_use < self.current:
                fut = queue.popleft()
                if not fut.done():
                    self.in_use += 1
                    fut.set_result(None)


class Endpoint:
    """What every request shape calling one endpoint key shares within a job.

    Args:
        name: shown in messages (model and server, no secrets).
        limits: its limits and retry budget.
        job_stop: the job's stop (a private one by default).
        identity: ``ModelConfig.identity()`` of the endpoint (for prices and display).
    """

    def __init__(self, name: str, limits: Limits, job_stop: JobStop | None = None, identity: str = "") -> None:
        self.name = name
        self.limits = limits
        self.identity = identity
        self.stats = CallStats()
        self.window = AdaptiveLimit(limits.max_concurrency)
        self.cool_until = 0.0
        self.failed_in_a_row = 0
        self.fatal: FatalBackendError | None = None
        self.job_stop = job_stop or JobStop()
        self.job_stop.subscribe(self._wake_all)
        self._rpm = per_minute_limiter(limits.rpm) if limits.rpm else None
        self._tpm = AsyncLimiter(limits.tpm, 60) if limits.tpm else None
        self._stopping: asyncio.Event | None = None
        # "none": next call probes; "probing": one is out; "open": everyone goes
        self._probe = "none" if limits.probe else "open"
        self._probe_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, window {self.window.current}/{self.window.cap})"

    @property
    def stopped(self) -> bool:
        """Whether no new attempt may start (this endpoint or the whole job stopped)."""
        return self.fatal is not None or self.job_stop.error is not None

    def stopping(self) -> asyncio.Event:
        """An event set once the endpoint or the job stops (sleepers race it)."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
            if self.stopped:
                self._stopping.set()
        return self._stopping

    def raise_if_stopped(self) -> None:
        """Raise the error that stopped the job or this endpoint, if any."""
        self.job_stop.raise_if_stopped()
        if self.fatal is not None:
            raise _copy(self.fatal) from None

    async def enter(self) -> bool:
        """Wait until this call may go: returns ``True`` when it is the probe (it goes alone)."""
        while True:
            self.raise_if_stopped()
            if self._probe == "open":
                return False
            if self._probe == "none":
                self._probe = "probing"
                return True
            fut = asyncio.get_running_loop().create_future()
            self._probe_waiters.append(fut)
            try:
                await fut
            finally:
                with suppress(ValueError):
                    self._probe_waiters.remove(fut)

    def leave_probe(self, passed: bool) -> None:
        """The probe ended: the endpoint opens if it answered; otherwise the next waiting call probes."""
        self._probe = "open" if passed else "none"
        self._wake_probe_waiters()

    async def admit(self, messages: Sequence[Message], params: SamplingParams, pause: Callable[[float], object]
                    ) -> None:
        """Wait for the rate budgets and any pause, right before sending (``pause`` sleeps unless stopped)."""
        if self._rpm is not None:
            await self._rpm.acquire(min(self._rpm.max_rate, 1.0 / self.window.scale))
        if self._tpm is not None:
            needed = sum(len(m["content"]) for m in messages) / 4 + params.max_tokens
            await self._tpm.acquire(min(needed / self.window.scale, self._tpm.max_rate))
        loop = asyncio.get_running_loop()
        # Checked last: a 429 may have paused the endpoint while this call waited above.
        while (delay := self.cool_until - loop.time()) > 0 and not self.stopped:
            await pause(delay)  # type: ignore[misc]

    def rate_limited(self, exc: RateLimitError, epoch: int) -> None:
        """A 429: cut the window (once per epoch); once it is down to one call, pause the endpoint."""
        self.stats.rate_limited += 1
        if self.window.current > 1:
            if self.window.cut(epoch):
                log.info("%s answered 429: at most %d calls in flight now", self.name, self.window.current)
            return
        pause = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
        until = asyncio.get_running_loop().time() + min(pause, MAX_SERVER_WAIT)
        if until > self.cool_until:
            log.info("%s keeps answering 429 at one call in flight: pausing it %.2f s", self.name, pause)
            self.cool_until = until

    def stop(self, exc: FatalBackendError) -> None:
        """Stop this endpoint: every waiting and later call fails with ``exc``."""
        if self.fatal is None:
            self.fatal = exc
            # Info, not error: the same message reaches the caller as the exception that stops the job, and the
            # CLI prints that one line; logging it too would say it twice.
            log.info("stopping calls to %s: %s", self.name, exc)
        self._wake_all()

    def reopen(self) -> None:
        """Let calls through again after an ``EndpointDownError`` stop (a fallback chain probing this endpoint).

        A stop for a wrong key or an unknown model stays: another try would fail the same way.
        """
        from hadron_hf.errors import EndpointDownError

        if isinstance(self.fatal, EndpointDownError) and self.job_stop.error is None:
            self.fatal = None
            self.failed_in_a_row = 0
            self._stopping = None
            self._probe = "none"

    def _wake_all(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        error = self.job_stop.error or self.fatal
        if error is not None:
            self.window.fail_waiters(lambda: _copy(error))
        self._wake_probe_waiters()

    def _wake_probe_waiters(self) -> None:
        for fut in self._probe_waiters:
            if not fut.done():
                fut.set_result(None)
