"""Budgets shared by many workers: each endpoint's RPM, TPM and concurrency, over a sliding window.

``ClusterLimiter`` holds every endpoint's budget in one place; ``hadron_hf.scale.ray_engine`` runs it as one named Ray
actor that every worker asks for a permit before each call. It needs no Ray itself: ``BudgetWindow`` is
plain arithmetic over explicit times, and ``ClusterLimiter`` plain asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hadron_hf.config import ModelConfig

GUARD_S = 1.0
"""Grants are spaced as if each window were this much longer, so that a call reaching the server later
than its permit (connection and TLS set-up, a busy worker) cannot push the server's own count over the
limit. It costs under 2% of a 60 s window."""

LEASE_SLACK_S = 30.0
"""A permit is reclaimed ``timeout + LEASE_SLACK_S`` seconds after it was granted (its worker died)."""

MAX_COOL_DOWN_S = 300.0


@dataclass(frozen=True)
class EndpointBudget:
    """One endpoint's budget, shared by every worker of the cluster.

    Args:
        max_concurrency: calls in flight at once.
        rpm: requests per window (``None``: unlimited).
        tpm: tokens per window, prompt estimate plus ``max_tokens`` (``None``: unlimited).
        lease_s: a permit never given back (its worker died) is reclaimed after this many seconds.
    """

    max_concurrency: int = 64
    rpm: float | None = None
    tpm: float | None = None
    lease_s: float = 150.0

    @classmethod
    def of(cls, cfg: ModelConfig) -> EndpointBudget:
        """The budget a ``ModelConfig`` declares."""
        return cls(cfg.max_concurrency, cfg.rpm, cfg.tpm, cfg.timeout + LEASE_SLACK_S)


class BudgetWindow:
    """Sliding-window accounting of one budget, over explicit times (no clock, no waiting).

    At most ``rpm`` grants fall in any ``window_s`` (a fractional ``rpm`` below 1 stretches the window
    instead), at most ``tpm`` tokens, and at most ``max_concurrency`` leases are open at once.

    Args:
        budget: the budget.
        window_s: the window length in seconds.
    """

    def __init__(self, budget: EndpointBudget, window_s: float) -> None:
        self.budget = budget
        self.window_s = window_s
        self.leases: dict[int, float] = {}
        self.cool_until = -math.inf
        self.reclaimed = 0
        self.window = float(budget.max_concurrency)
        self.epoch = 0
        self._lease_epoch: dict[int, int] = {}
        self._rpm_count = max(1, math.floor(budget.rpm)) if budget.rpm else 0
        self._rpm_window = window_s * self._rpm_count / budget.rpm if budget.rpm else 0.0
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, float]] = deque()
        self._token_sum = 0.0

    def delay(self, now: float, tokens: float) -> float:
        """Seconds from ``now`` until a call of ``tokens`` may start; 0 when it may start now."""
        self._forget(now)
        waits = [self.cool_until - now]
        if len(self.leases) >= max(1, int(self.window)):
            waits.append(min(self.leases.values()) - now)
        if self._rpm_count and len(self._requests) >= self._rpm_count:
            waits.append(self._requests[-self._rpm_count] + self._rpm_window - now)
        if self.budget.tpm is not None:
            excess = self._token_sum + min(tokens, self.budget.tpm) - self.budget.tpm
            freed = 0.0
            for at, spent in self._tokens if excess > 0 else ():
                freed += spent
                if freed >= excess:
                    waits.append(at + self.window_s - now)
                    break
        return max(0.0, *waits)

    def grant(self, now: float, tokens: float, lease: int) -> None:
        """Record a call of ``tokens`` starting at ``now`` under ``lease``."""
        self.leases[lease] = now + self.budget.lease_s
        self._lease_epoch[lease] = self.epoch
        if self._rpm_count:
            self._requests.append(now)
        if self.budget.tpm is not None:
            spent = min(tokens, self.budget.tpm)
            self._tokens.append((now, spent))
            self._token_sum += spent

    def release(self, lease: int, ok: bool = True) -> None:
        """Give ``lease`` back (a lease already reclaimed is ignored); a success grows the window by one."""
        self.leases.pop(lease, None)
        self._lease_epoch.pop(lease, None)
        if ok and self.window < self.budget.max_concurrency:
            self.window = min(float(self.budget.max_concurrency), self.window + 1.0)

    def overloaded(self, now: float, lease: int, seconds: float) -> None:
        """The call under ``lease`` got a 429: halve the concurrency window (once per epoch, as TCP
        does); once it is down to one call, pause the endpoint for ``seconds``."""
        if int(self.window) <= 1:
            self.cool_until = max(self.cool_until, now + min(seconds, MAX_COOL_DOWN_S))
        elif self._lease_epoch.get(lease, self.epoch) == self.epoch:
            self.epoch += 1
            self.window = max(1.0, self.window / 2)

    def _forget(self, now: float) -> None:
        while self._requests and self._requests[0] + self._rpm_window <= now:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] + self.window_s <= now:
            self._token_sum -= self._tokens.popleft()[1]
        for lease in [k for k, until in self.leases.items() if until <= now]:
            del self.leases[lease]
            self.reclaimed += 1


class ClusterLimiter:
    """Every endpoint's budget for a whole cluster; runs as one named async Ray actor.

    Permits go out one at a time per endpoint, in the order they were asked for.

    Args:
        budgets: endpoint key (``ModelConfig.endpoint_key()``) to its budget.
        window_s: the RPM/TPM window.
        guard_s: added to the window (see ``GUARD_S``).
    """

    def __init__(self, budgets: Mapping[str, EndpointBudget], window_s: float = 60.0,
                 guard_s: float = GUARD_S) -> None:
        self._windows = {ident: BudgetWindow(b, window_s + guard_s) for ident, b in budgets.items()}
        self._turns = {ident: asyncio.Lock() for ident in budgets}
        self._freed = {ident: asyncio.Event() for ident in budgets}
        self._next_lease = 0
        self._granted: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()

    async def acquire(self, identity: str, tokens: float, holder: str) -> int:
        """Wait for a permit to send one call of about ``tokens`` tokens; returns its lease."""
        window = self._windows.get(identity)
        if window is None:
            return -1
        async with self._turns[identity]:
            while (wait := window.delay(time.monotonic(), tokens)) > 0:
                self._freed[identity].clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed[identity].wait(), wait)
            self._next_lease += 1
            window.grant(time.monotonic(), tokens, self._next_lease)
        self._granted[holder] += 1
        self._peak[identity] = max(self._peak[identity], len(window.leases))
        return self._next_lease

    async def release(self, identity: str, lease: int, ok: bool = True) -> None:
        """Give a permit back when its call has ended (``ok``: it was answered)."""
        if identity in self._windows:
            self._windows[identity].release(lease, ok)
            self._freed[identity].set()

    async def overloaded(self, identity: str, lease: int, seconds: float) -> None:
        """The call under ``lease`` got a 429: cut the endpoint's cluster-wide window (see ``BudgetWindow``)."""
        if identity in self._windows:
            self._windows[identity].overloaded(time.monotonic(), lease, seconds)

    async def stats(self) -> dict[str, Any]:
        """Permits granted per holder, peak calls in flight and current window per endpoint, leases reclaimed."""
        return {"granted": dict(self._granted), "peak_in_flight": dict(self._peak),
                "window": {ident: int(w.window) for ident, w in self._windows.items()},
                "reclaimed": sum(w.reclaimed for w in self._windows.values())}
