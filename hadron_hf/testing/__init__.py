"""Fakes for tests, benchmarks and offline experiments; the library never imports this package.

- ``FakeOpenAIServer``: a real OpenAI-compatible chat server on 127.0.0.1 that answers every role of the
  tournament with deterministic text and injects faults (``Faults``) at a configurable rate;
- ``FakeBatchServer``: the same server with OpenAI's batch API (files, batches, expiry, per-request errors);
- ``ScriptedChatModel``: an in-process ``ChatModel`` that replays queued replies and records every call;
- ``comparable_rows``, ``without_speculation``, ``dependent_steps``: comparing two runs' rows, and a row's
  chain of dependent calls.

Example:
    >>> with FakeOpenAIServer(latency=0.01) as server:  # doctest: +SKIP
    ...     cfg = ModelConfig(base_url=server.url, model="fake")
"""

from hadron_hf.testing.batch_server import BatchFaults, BatchLog, FakeBatchServer
from hadron_hf.testing.openai_server import (
    ERROR_STYLES,
    FAULT_KINDS,
    REPLY_FAULT_KINDS,
    FakeOpenAIServer,
    Faults,
    ServerLog,
)
from hadron_hf.testing.replies import role_of, scripted_reply
from hadron_hf.testing.rows import SPECULATIVE_USAGE, comparable_rows, dependent_steps, without_speculation
from hadron_hf.testing.scripted import Reply, ScriptedChatModel

__all__ = ["ERROR_STYLES", "FAULT_KINDS", "REPLY_FAULT_KINDS", "SPECULATIVE_USAGE", "BatchFaults", "BatchLog",
           "FakeBatchServer", "FakeOpenAIServer", "Faults", "Reply", "ScriptedChatModel", "ServerLog",
           "comparable_rows", "dependent_steps", "role_of", "scripted_reply", "without_speculation"]
