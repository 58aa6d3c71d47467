"""A real OpenAI-compatible chat server on 127.0.0.1 for tests, benchmarks and offline experiments
(import it from ``hadron_hf.testing``; the library never imports it).

It answers every role of the tournament with deterministic text derived from the request, so a re-run
with the same seed gets the same replies, and it injects faults (429 with ``Retry-After``, 503, dropped
connections, replies slower than the client's timeout, malformed JSON, empty content, garbage judge
replies) at a configurable rate.

Example:
    >>> with FakeOpenAIServer(latency=0.01) as server:  # doctest: +SKIP
    ...     cfg = ModelConfig(base_url=server.url, model="fake")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from hadron_hf.testing.replies import role_of, scripted_reply

FAULT_KINDS: tuple[str, ...] = ("429", "503", "drop", "slow", "malformed", "empty", "garbage_judge")
REPLY_FAULT_KINDS: tuple[str, ...] = ("no_message", "no_choices", "error_in_200", "429_tokens")
"""Faults for scripted use (``Faults.kinds`` or ``Faults.at``), not in the default mix: a 200 whose choice
is a stream chunk (``delta``, no ``message``); a 200 with no choices; an OpenRouter-style error object inside
a 200; a 429 that names the tokens limit, with ``x-ratelimit-reset-tokens`` set to ``retry_after`` and
``x-ratelimit-reset-requests`` set longer."""
ERROR_STYLES: tuple[str, ...] = ("openai", "string", "detail", "openrouter")
Responder = Callable[[str, list[dict[str, str]], dict[str, Any]], str | None]


@dataclass
class Faults:
    """Which faults to inject and how often.

    Args:
        rate: probability that a request gets a fault.
        kinds: the faults to choose from (see ``FAULT_KINDS``).
        retry_after: seconds the server asks for with a 429.
        retry_after_header: how it asks: ``"Retry-After"`` (seconds), ``"retry-after-ms"``
            (milliseconds), ``"x-ratelimit-reset-requests"`` (an OpenAI duration such as ``250ms``, or
            ``0``) or ``"http-date"`` (``Retry-After`` as an HTTP date ``retry_after`` seconds ahead).
        slow_seconds: how long a ``slow`` reply takes (set it above the client's timeout).
        seed: seed of the fault draws.
        at: scripted faults, by request number (1 for the first chat request); these come on top of
            the random ones and ignore ``kinds``.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: float = 0.05
    retry_after_header: str = "Retry-After"
    slow_seconds: float = 2.0
    seed: int = 0
    at: dict[int, str] = field(default_factory=dict)


@dataclass
class ServerLog:
    """What the server saw.

    Args:
        requests: chat requests received.
        in_flight: requests being handled now.
        peak_in_flight: the most handled at once.
        answered: successful answers delivered, by request digest (model, messages, seed).
        models: ``(role, model)`` of each request.
        faults: injected faults by kind.
        bodies: every request body.
        keys_seen: the ``Authorization`` header of every request.
        arrivals: when each chat request arrived (server clock, seconds; compare them to each other).
        fault_times: ``(time, kind)`` of each injected fault, on the same clock.
        abandoned: answers not delivered because the client had already gone (killed, timed out).
        held: requests that waited at the ``hold_after`` gate.
    """

    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    models: list[tuple[str, str]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keys_seen: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    fault_times: list[tuple[float, str]] = field(default_factory=list)
    abandoned: int = 0
    held: int = 0

    @property
    def repeated(self) -> int:
        """Identical requests answered more than once (a resumed run should have none).

        Only answers the client was still there to receive count: a reply to a client that had timed
        out or been killed is in ``abandoned`` instead.
        """
        return sum(n - 1 for n in self.answered.values() if n > 1)


class FakeOpenAIServer:
    """An aiohttp chat-completions server on 127.0.0.1, running in its own thread.

    Args:
        latency: seconds each successful reply takes.
        faults: fault injection (``None``: none).
        api_key: when set, requests must carry it as a bearer token or get 401.
        max_prompt_chars: longer requests get 400 ``context_length_exceeded``.
        reasoning: how to return reasoning: ``"reasoning"``, ``"reasoning_content"``, ``"think"``
            (inline ``<think>`` in the content) or ``None``.
        responder: ``(role, messages, body) -> text | None`` overriding the scripted replies.
        no_flaws_rate: how often a critic allowed to say NO FLAWS does so.
        port: the port (0 picks a free one).
        models: when set, any other model name gets 404 ``model_not_found``.
        hold_after: after this many successful answers, further requests wait (unanswered) until
            ``release()``; a request whose client goes away meanwhile is dropped. Tests use it to kill a
            client at a known point.
        error_style: the shape of error bodies (see ``ERROR_STYLES``): ``"openai"``
            (``{"error": {"message": ...}}``), ``"string"`` (``{"error": "text"}``, as mlx_lm.server),
            ``"detail"`` (``{"detail": "text"}``, as FastAPI servers) or ``"openrouter"`` (the reason in
            ``error.metadata.raw``).
    """

    def __init__(self, latency: float = 0.0, faults: Faults | None = None, api_key: str | None = None,
                 max_prompt_chars: int | None = None, reasoning: str | None = None,
                 responder: Responder | None = None, no_flaws_rate: float = 0.3, port: int = 0,
                 models: tuple[str, ...] | None = None, hold_after: int | None = None,
                 error_style: str = "openai") -> None:
        if error_style not in ERROR_STYLES:
            raise ValueError(f"error_style must be one of {ERROR_STYLES}, got {error_style!r}")
        self.latency = latency
        self.faults = faults or Faults()
        self.api_key = api_key
        self.max_prompt_chars = max_prompt_chars
        self.reasoning = reasoning
        self.responder = responder
        self.no_flaws_rate = no_flaws_rate
        self.port = port
        self.models = models
        self.hold_after = hold_after
        self.error_style = error_style
        self.log = ServerLog()
        self._released: asyncio.Event | None = None
        self._fault_rng = random.Random(self.faults.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ``/v1`` base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving in a background thread."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="fake-openai")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")

    def release(self) -> None:
        """Open the ``hold_after`` gate: held requests and all later ones are answered."""
        self.hold_after = None
        if self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is None or self._thread is None:
            return
        runner = self._runner
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._released = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.close()

    def _add_routes(self, app: web.Application) -> None:
        """Subclasses add their routes here (``FakeBatchServer`` adds the batch API)."""

    async def _models(self, request: web.Request) -> web.Response:
        names = self.models or ("fake",)
        return web.json_response({"object": "list", "data": [{"id": n, "object": "model"} for n in names]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        log = self.log
        log.requests += 1
        log.arrivals.append(asyncio.get_running_loop().time())
        log.in_flight += 1
        log.peak_in_flight = max(log.peak_in_flight, log.in_flight)
        try:
            return await self._answer(request, log.requests)
        finally:
            log.in_flight -= 1

    async def _answer(self, request: web.Request, number: int) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.log.keys_seen.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            shown = auth.removeprefix("Bearer ")
            return self._error(401, f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}.", "invalid_api_key")
        body = await request.json()
        messages: list[dict[str, str]] = body["messages"]
        model = str(body.get("model", ""))
        role = role_of(messages)
        self.log.models.append((role, model))
        self.log.bodies.append(body)
        if self.models is not None and model not in self.models:
            return self._error(404, f"The model `{model}` does not exist.", "model_not_found")
        if self.max_prompt_chars is not None and sum(len(m["content"]) for m in messages) > self.max_prompt_chars:
            return self._error(400, "This model's maximum context length is exceeded.", "context_length_exceeded")
        fault = self.faults.at.get(number) or self._draw_fault(role)
        if fault is not None:
            self.log.faults[fault] += 1
            self.log.fault_times.append((asyncio.get_running_loop().time(), fault))
            early = await self._inject(fault, request)
            if early is not None:
                return early
        if not await self._pass_gate(request):
            return web.Response(status=499)
        await asyncio.sleep(self.latency)
        if _client_gone(request):
            self.log.abandoned += 1
            return web.Response(status=499)
        digest = hashlib.sha256(json.dumps([model, messages, body.get("seed")], sort_keys=True).encode()).hexdigest()
        text = self.responder(role, messages, body) if self.responder else None
        if text is None:
            text = scripted_reply(role, messages, digest, self.no_flaws_rate)
        if fault == "garbage_judge":
            text = "I think they are all fine, really."
        elif fault == "empty":
            text = ""
        else:
            self.log.answered[digest] += 1
        return web.json_response(self._completion(model, role, text, messages))

    async def _pass_gate(self, request: web.Request) -> bool:
        """Wait while the ``hold_after`` gate is shut; ``False`` if the client went away meanwhile."""
        if self.hold_after is None or sum(self.log.answered.values()) < self.hold_after:
            return True
        assert self._released is not None
        self.log.held += 1
        while not self._released.is_set():
            if _client_gone(request):
                self.log.abandoned += 1
                return False
            try:
                await asyncio.wait_for(self._released.wait(), 0.02)
            except TimeoutError:
                pass
        return True

    def _draw_fault(self, role: str) -> str | None:
        f = self.faults
        if f.rate <= 0 or self._fault_rng.random() >= f.rate:
            return None
        kinds = [k for k in f.kinds if k != "garbage_judge" or role == "judge"]
        return self._fault_rng.choice(kinds) if kinds else None

    async def _inject(self, fault: str, request: web.Request) -> web.StreamResponse | None:
        if fault == "429":
            return self._error(429, "Rate limit reached.", "rate_limit_exceeded", self._retry_after_headers())
        if fault == "503":
            return self._error(503, "The server is overloaded.", "overloaded")
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
        if fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        if fault == "no_message":
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": "fake",
                     "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
            return web.json_response(chunk)
        if fault == "no_choices":
            return web.json_response({"id": "x", "object": "chat.completion", "model": "fake", "choices": []})
        if fault == "error_in_200":
            return web.json_response({"error": {"message": "Provider returned error", "code": 502, "metadata": {
                "raw": "upstream overloaded, try again", "provider_name": "fake-upstream"}}})
        if fault == "429_tokens":
            wait = self.faults.retry_after
            headers = {"x-ratelimit-reset-tokens": f"{wait * 1000:g}ms",
                       "x-ratelimit-reset-requests": f"{wait * 1000 + 60_000:g}ms",
                       "x-ratelimit-remaining-requests": "99", "x-ratelimit-remaining-tokens": "0"}
            return self._error(429, "Rate limit reached for fake on tokens per min (TPM): Limit 1000, Used 1000.",
                               "rate_limit_exceeded", headers, kind="tokens")
        return None

    def _retry_after_headers(self) -> dict[str, str]:
        name, wait = self.faults.retry_after_header, self.faults.retry_after
        if name.lower() == "retry-after-ms":
            return {name: f"{wait * 1000:g}"}
        if name.lower().startswith("x-ratelimit-reset"):
            return {name: f"{wait * 1000:g}ms" if wait else "0"}
        if name.lower() == "http-date":
            return {"Retry-After": formatdate(time.time() + wait, usegmt=True)}
        return {name: f"{wait:g}"}

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None,
               kind: str = "invalid_request_error") -> web.Response:
        """An error reply shaped as ``error_style`` says."""
        body: dict[str, Any]
        if self.error_style == "string":
            body = {"error": message}
        elif self.error_style == "detail":
            body = {"detail": message}
        elif self.error_style == "openrouter":
            body = {"error": {"message": "Provider returned error", "code": status,
                              "metadata": {"raw": message, "provider_name": "fake-upstream"}}}
        else:
            body = {"error": {"message": message, "type": kind, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _completion(self, model: str, role: str, text: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        thought = f"Thinking as the {role} about the request."
        if self.reasoning == "think":
            message["content"] = f"<think>{thought}</think>\n{text}"
        elif self.reasoning in ("reasoning", "reasoning_content"):
            message[self.reasoning] = thought
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + 1
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt_tokens + len(text) // 4 + 1},
        }


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
