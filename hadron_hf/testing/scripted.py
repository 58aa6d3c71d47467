"""``ScriptedChatModel``: an in-process ``ChatModel`` that replays scripted replies and records every call
(import it from ``hadron_hf.testing``; the library never imports it)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from hadron_hf.chat import Completion, Message, SamplingParams, split_reasoning

Reply = str | BaseException | Callable[[list[Message], SamplingParams], "str | BaseException"]
"""A scripted reply: its text (``<think>`` blocks become the reasoning), an error to raise, or a function
of the call's messages and params that returns either."""

Call = tuple[list[Message], SamplingParams]
"""One recorded call: its messages and params."""


@dataclass
class ScriptedChatModel:
    """A fake ``ChatModel`` that replays queued replies and records every call.

    Args:
        replies: replies used in order, one per call (see ``Reply``).
        default: the reply once ``replies`` is used up; ``None``: running out fails the test.
        model: the name reported in each completion.
        latency: seconds each call awaits before answering (0 still yields to the event loop once).
        calls: every call's messages and params, in order (filled in as calls arrive).
        prompt_tokens: the input tokens each completion reports.
        completion_tokens: the output tokens each completion reports.
        on_call: awaited with each call's messages and params once the call is recorded, before its latency
            and reply: hold a call (e.g. on an ``asyncio.Event``) to force an interleaving, or note what is
            in flight.

    Example:
        >>> fake = ScriptedChatModel(["first", RuntimeError("down")], default=lambda m, p: m[-1]["content"])
    """

    replies: list[Reply] = field(default_factory=list)
    default: Reply | None = None
    model: str = "scripted"
    latency: float = 0.0
    calls: list[Call] = field(default_factory=list)
    prompt_tokens: int = 1
    completion_tokens: int = 1
    on_call: Callable[[list[Message], SamplingParams], Awaitable[None]] | None = None

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer with the next scripted reply (or raise it, when it is an error)."""
        self.calls.append((list(messages), params))
        if self.on_call is not None:
            await self.on_call(list(messages), params)
        await asyncio.sleep(self.latency)
        if self.replies:
            reply: Reply = self.replies.pop(0)
        elif self.default is not None:
            reply = self.default
        else:
            raise AssertionError(f"ScriptedChatModel ran out of replies after {len(self.calls) - 1} calls")
        result = reply(list(messages), params) if callable(reply) and not isinstance(reply, BaseException) else reply
        if isinstance(result, BaseException):
            raise result
        answer, reasoning = split_reasoning(result)
        return Completion(answer, reasoning, prompt_tokens=self.prompt_tokens,
                          completion_tokens=self.completion_tokens, model=self.model)

    def calls_by(self, key: Callable[[list[Message]], str]) -> defaultdict[str, list[Call]]:
        """The recorded calls grouped by ``key`` of their messages, e.g. ``calls_by(role_of)["judge"]``.

        Args:
            key: names a call's group from its messages (``hadron_hf.testing.role_of`` names its role).

        Returns:
            Each group's calls in call order; a group no call fell into reads as empty.
        """
        groups: defaultdict[str, list[Call]] = defaultdict(list)
        for messages, params in self.calls:
            groups[key(messages)].append((messages, params))
        return groups
