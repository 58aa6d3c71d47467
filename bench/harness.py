"""What every benchmark shares: the fake server (in a thread or a child process), config building,
machine description and the ``ratio`` lines the smoke test looks for.

The fake server is an aiohttp app on one thread. In the benchmark's own process it shares the GIL with
the client under test, so every request's server-side CPU time is charged to the client: on a 2-core
machine that caps what both can reach. ``mode="process"`` runs it in a child process (its own
interpreter and core) and reads its log over a pipe; ``mode="thread"`` is the plain in-process server.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

from pydantic import SecretStr

from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.testing import FakeOpenAIServer

ServerMode = Literal["process", "thread"]
_REPLAY_KEYS = ("model", "messages", "temperature", "max_tokens", "seed")
_FILLER = ("the answer covers each step in order, names its assumptions, checks the edge cases, "
           "and gives a short worked example before the summary.").split()
_FILLER_TEXT = " ".join(random.Random(0).choices(_FILLER, k=4000))
TOPICS = ("TCP slow start", "a haiku about rust", "binary search", "the CAP theorem", "photosynthesis",
          "Bayes' rule", "a limerick about queues", "garbage collection", "the Fourier transform", "DNS")


def bench_prompts(n: int) -> list[str]:
    """``n`` distinct prompts (distinct so that no two rows share a request-cache entry)."""
    return [f"Explain {TOPICS[i % len(TOPICS)]} to a new engineer (case {i})." for i in range(n)]


def make_config(url: str, *, concurrency: int = 64, rpm: float | None = None, backend: str = "openai",
                **fields: Any) -> AutoReasonConfig:
    """A tournament config against ``url``; fields this build does not know are dropped (and reported).

    Args:
        url: the server's ``/v1`` URL.
        concurrency: ``ModelConfig.max_concurrency``.
        rpm: ``ModelConfig.rpm``.
        backend: ``ModelConfig.backend`` (``"openai"``: aiohttp, the default; ``"openai_sdk"``: the SDK).
        fields: ``AutoReasonConfig`` fields; ``progress`` is turned off when the field exists.
    """
    known = AutoReasonConfig.model_fields
    dropped = sorted(k for k in fields if k not in known)
    if dropped:
        print(f"note: this hadron_hf has no {', '.join(dropped)}; running without", file=sys.stderr)
    kept = {k: v for k, v in fields.items() if k in known}
    if "progress" in known:
        kept.setdefault("progress", False)
    model = ModelConfig(backend=backend, base_url=url, model="fake", api_key=SecretStr("bench"),  # type: ignore[arg-type]
                        max_concurrency=concurrency, rpm=rpm, timeout=600)
    return AutoReasonConfig(model=model, **kept)


def has_field(name: str) -> bool:
    """Whether this build's ``AutoReasonConfig`` has the field ``name``."""
    return name in AutoReasonConfig.model_fields


def describe_machine() -> str:
    """One line: CPUs, Python, key package versions and the load average (these machines are shared)."""
    import aiohttp
    import openai

    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}, "
            f"openai {openai.__version__}, aiohttp {aiohttp.__version__}, load avg {load}")


def print_ratio(name: str, value: float, detail: str = "") -> None:
    """Print one ``ratio NAME: VALUE  (detail)`` line, the benchmarks' headline format."""
    print(f"ratio {name}: {value:.3f}" + (f"  ({detail})" if detail else ""), flush=True)


@dataclass
class ServerStats:
    """What the server saw since the last reset."""

    requests: int
    peak_in_flight: int
    roles: dict[str, int]
    cpu: float | None = None


def padded_reply(role: str, messages: list[dict[str, str]], body: dict[str, Any], chars: int) -> str | None:
    """A reply of about ``chars`` characters for drafting roles; ``None`` (the scripted reply) for the others.

    Judges and critics keep the scripted replies, which the tournament must parse.
    """
    if role in ("judge", "critic") or chars <= 0:
        return None
    # A slice of a fixed filler text, at an offset derived from the request: a few microseconds, since
    # the server shares this machine's CPUs with the client being measured.
    span = max(1, len(_FILLER_TEXT) - chars - 16)
    start = (int(body.get("seed") or 0) * 7919 + len(messages[-1]["content"]) * 104729) % span
    start = _FILLER_TEXT.find(" ", start) + 1
    end = _FILLER_TEXT.rfind(" ", start, start + chars)
    return f"{role} answer: {_FILLER_TEXT[start:end]}"


def _make_server(latency: float, completion_chars: int) -> FakeOpenAIServer:
    return FakeOpenAIServer(latency=latency, responder=functools.partial(padded_reply, chars=completion_chars))


def _stats_of(server: FakeOpenAIServer) -> ServerStats:
    roles = Counter(role for role, _model in server.log.models)
    return ServerStats(server.log.requests, server.log.peak_in_flight, dict(roles))


def _requests_of(server: FakeOpenAIServer, limit: int) -> list[dict[str, Any]]:
    return [{k: body[k] for k in _REPLAY_KEYS if k in body} for body in server.log.bodies[:limit]]


def _reset(server: FakeOpenAIServer) -> None:
    # A fresh log, whatever fields this build's ServerLog has; called only while nothing is in flight.
    server.log = type(server.log)()


def _child(conn: Connection, latency: float, completion_chars: int) -> None:
    server = _make_server(latency, completion_chars)
    server.start()
    conn.send(server.url)
    cpu = time.process_time()
    while True:
        command = conn.recv()
        if command == "stats":
            stats = _stats_of(server)
            stats.cpu = time.process_time() - cpu
            conn.send(stats)
        elif command == "reset":
            _reset(server)
            cpu = time.process_time()
            conn.send(True)
        elif isinstance(command, tuple) and command[0] == "requests":
            conn.send(_requests_of(server, command[1]))
        else:
            server.stop()
            conn.send(True)
            return


class BenchServer:
    """The fake OpenAI-compatible server, in a child process or a thread, with one interface for both.

    Args:
        latency: seconds each reply takes.
        completion_chars: length of teacher, author and synthesizer replies (0: the short scripted ones).
        mode: ``"process"`` (own interpreter and core) or ``"thread"`` (this process, shared GIL).
    """

    def __init__(self, latency: float = 0.2, completion_chars: int = 600, mode: ServerMode = "process") -> None:
        self.latency = latency
        self.completion_chars = completion_chars
        self.mode = mode
        self.url = ""
        self._server: FakeOpenAIServer | None = None
        self._conn: Connection | None = None
        self._proc: Any = None

    def __enter__(self) -> BenchServer:
        if self.mode == "thread":
            self._server = _make_server(self.latency, self.completion_chars)
            self._server.start()
            self.url = self._server.url
            return self
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, self.latency, self.completion_chars), daemon=True)
        self._proc.start()
        self._conn = parent
        if not parent.poll(60):
            raise RuntimeError("benchmark server process did not start")
        self.url = parent.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        if self._conn is not None:
            self._conn.send("stop")
            self._conn.poll(10)
            self._proc.join(10)
            self._conn.close()

    def stats(self) -> ServerStats:
        """Requests, peak in flight, calls per role and (in process mode) server CPU seconds since ``reset``."""
        if self._server is not None:
            return _stats_of(self._server)
        assert self._conn is not None
        self._conn.send("stats")
        stats: ServerStats = self._conn.recv()
        return stats

    def requests(self, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` chat requests since ``reset`` (model, messages and sampling fields), to replay."""
        if self._server is not None:
            return _requests_of(self._server, limit)
        assert self._conn is not None
        self._conn.send(("requests", limit))
        found: list[dict[str, Any]] = self._conn.recv()
        return found

    def reset(self) -> None:
        """Zero the log (between a warm-up and the measured run)."""
        if self._server is not None:
            _reset(self._server)
            return
        assert self._conn is not None
        self._conn.send("reset")
        self._conn.recv()


@dataclass
class Timing:
    """Wall and CPU seconds of a measured run and how many calls it made."""

    calls: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        """Calls per wall second."""
        return self.calls / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        """This process's CPU milliseconds per call (less noisy than wall time on a shared machine)."""
        return 1000 * self.cpu / self.calls if self.calls else 0.0


def teacher_like_messages(i: int) -> list[dict[str, str]]:
    """A small chat request, distinct per ``i``."""
    return [{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} to a new engineer (call {i})."}]


def teacher_like_requests(n: int, first: int = 0) -> list[dict[str, Any]]:
    """``n`` small chat-completions bodies, distinct per index (seeds ``first`` to ``first + n - 1``)."""
    return [{"model": "fake", "messages": teacher_like_messages(i), "temperature": 0.7, "max_tokens": 256,
             "seed": i} for i in range(first, first + n)]


async def bare_openai_loop(url: str, concurrency: int, requests: list[dict[str, Any]],
                           transport: str = "httpx") -> Timing:
    """Send ``requests`` (chat-completions bodies) through a bare ``AsyncOpenAI(max_retries=0)``,
    ``concurrency`` at a time.

    Args:
        transport: ``"httpx"`` (the SDK's default) or ``"aiohttp"`` (``openai.DefaultAioHttpClient``).
    """
    import openai

    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600,
                                http_client=http_client)
    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            await client.chat.completions.create(**body)

    try:
        await asyncio.gather(*map(one, teacher_like_requests(concurrency, -concurrency)))  # open the connections
        return await _timed(asyncio.gather(*map(one, requests)), len(requests))
    finally:
        await client.close()


async def raw_aiohttp_loop(url: str, concurrency: int, requests: list[dict[str, Any]]) -> Timing:
    """The same as ``bare_openai_loop`` through a bare ``aiohttp`` session: the ceiling of a Python client."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(body: dict[str, Any]) -> None:
            async with gate, session.post(f"{url}/chat/completions", json=body) as reply:
                await reply.json()

        await asyncio.gather(*map(one, teacher_like_requests(concurrency, -concurrency)))
        return await _timed(asyncio.gather(*map(one, requests)), len(requests))


async def _timed(work: Any, calls: int) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    await work
    return Timing(calls, time.perf_counter() - wall, time.process_time() - cpu)
