"""Fallback models: when a role's model stays rate-limited or its endpoint is down, answer with the next.

``FallbackChatModel`` is a small circuit breaker over an ordered list of model stacks (each with its own
limits, retries and cache):

- A call goes to the first model that is up.
- When that model gives up, it is marked down for ``cool_off`` seconds and the call moves on to the next
  one. Giving up means a ``RetryableError`` after its retry budget (still rate-limited, 5xx, timeouts,
  refused connections) or an ``EndpointDownError`` (its resilience layer stopped it).
- Once the cool-off is over, one call probes the model again (the others keep using the fallback); if it
  answers, the model is up again and takes every call, so a chain comes back to its primary.
- Other errors pass through: a rejected request fails its row, and a wrong key or unknown model stops the
  job, because another model would not fix the configuration.
- When every model is down, the call fails with the last error: the row fails, or the job stops if that
  error was fatal.

``Completion.model`` tells which model answered, so ``reasoning_traces`` and each vote's ``model`` show
the fallback.

Example:
    >>> chain = FallbackChatModel([primary, backup], ["m at primary", "m at backup"])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.errors import BackendError, ConfigError, EndpointDownError, RetryableError

log = logging.getLogger("hadron_hf")

DEFAULT_COOL_OFF = 60.0
"""Seconds a model that gave up is skipped before one call probes it again."""

Clock = Callable[[], float]


@dataclass
class _Member:
    model: ChatModel
    name: str
    reopen: Callable[[], None] | None
    down_until: float | None = None
    probing: bool = False
    answered: int = 0
    gave_up: int = 0


class FallbackChatModel:
    """Answer with the first model of a chain that is up; move down the chain when one gives up.

    Args:
        models: the primary first, then its fallbacks in order.
        names: a display name per model (no secrets), for logs and errors.
        cool_off: seconds a model that gave up is skipped before one call probes it again.
        reopen: per model, a callable that lets calls through again after its resilience layer stopped
            it (``ResilientChatModel.reopen``), or ``None``; called right before a probe.
        clock: seconds, monotonic; the running event loop's clock by default (tests pass their own).

    Raises:
        ConfigError: no models, or names that do not match them.
    """

    def __init__(self, models: Sequence[ChatModel], names: Sequence[str], *, cool_off: float = DEFAULT_COOL_OFF,
                 reopen: Sequence[Callable[[], None] | None] | None = None, clock: Clock | None = None) -> None:
        if not models or len(names) != len(models) or (reopen is not None and len(reopen) != len(models)):
            raise ConfigError("a fallback chain needs at least one model, and one name (and reopen) per model")
        hooks = list(reopen) if reopen is not None else [None] * len(models)
        self._members = [_Member(m, n, r) for m, n, r in zip(models, names, hooks, strict=True)]
        self.cool_off = cool_off
        self._clock = clock

    def __repr__(self) -> str:
        return f"FallbackChatModel({[m.name for m in self._members]!r})"

    def answered(self) -> dict[str, int]:
        """Calls each model answered through this chain, by name."""
        return {m.name: m.answered for m in self._members}

    def is_down(self, index: int) -> bool:
        """Whether model ``index`` is being skipped now."""
        return self._members[index].down_until is not None

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer with the first model that is up (or due for a probe), falling back as models give up.

        Raises:
            RetryableError: every model gave up on this call (this row fails).
            FatalBackendError: the last model tried is stopped, or the error cannot be fixed by another
                model (bad key, unknown model).
            RequestRejectedError: the server refused this request.
        """
        last: BackendError | None = None
        for member in self._members:
            if not self._take(member):
                continue
            try:
                done = await member.model.chat(messages, params)
            except (RetryableError, EndpointDownError) as exc:
                self._give_up(member, exc)
                last = exc
                continue
            except BaseException:
                member.probing = False
                raise
            self._recover(member)
            return done
        if last is not None:
            raise last
        # Every model is cooling off while other calls probe them: the last one answers for itself (it
        # retries a rate limit, and a stopped endpoint stops the job as it would without fallbacks).
        member = self._members[-1]
        done = await member.model.chat(messages, params)
        member.answered += 1
        return done

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _take(self, member: _Member) -> bool:
        """Whether this call may use ``member``: it is up, or it is due for a probe and nobody probes it."""
        if member.down_until is None:
            return True
        if member.probing or self._now() < member.down_until:
            return False
        member.probing = True
        if member.reopen is not None:
            member.reopen()
        log.info("probing %s again after its cool-off", member.name)
        return True

    def _give_up(self, member: _Member, exc: BackendError) -> None:
        member.gave_up += 1
        member.probing = False
        if member.down_until is None:
            log.warning("%s gave up (%s: %s); using the next model for %g s", member.name, type(exc).__name__,
                        exc, self.cool_off)
        member.down_until = self._now() + self.cool_off

    def _recover(self, member: _Member) -> None:
        member.answered += 1
        if member.down_until is not None and member.probing:
            log.info("%s answers again; calls go back to it", member.name)
            member.down_until = None
        member.probing = False
