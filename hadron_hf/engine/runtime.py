"""Build, run and close a job's model stack: backend → endpoint limits and retries → fallbacks → request cache.

Who owns what:

- A ``Runtime`` is one config's stack in one event loop (HTTP clients are bound to a loop): a client per
  request shape (``ModelConfig.request_fingerprint()``), an ``Endpoint`` per endpoint key shared by the
  shapes calling it, a ``CachedChatModel`` per logical model (a model, or a primary with its fallback
  chain, cached above the chain), one ``JobStop``, one cache store and one progress line. ``aclose()``
  closes the clients, flushes and closes the store, and frees local models it loaded.
- A ``Job`` (``open_job``) spans one or more ``Dataset.map`` calls: it keeps in-process models (llama.cpp,
  mlx) loaded across them and closes every runtime it made when it ends. The CLI runs in one.
- Without a job, a bare ``ds.map(autoreason_map, ...)`` gets a runtime per event loop that lives while
  batches of that loop are running: the last batch to end closes it. This lookup of live runtimes is the
  only process-level table, and it is empty whenever no map is running.

The Ray engine passes its cache store and its permit layer to ``Job`` explicitly (``hadron_hf.scale.ray_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from hadron_hf.chat import ChatModel
from hadron_hf.config import AutoReasonConfig, ModelConfig, check_shared_endpoints
from hadron_hf.core.tournament import RoleModels, TournamentSettings
from hadron_hf.engine.cache import CachedChatModel, CacheStore, SQLiteStore
from hadron_hf.engine.endpoint import CallStats, Endpoint, InterruptedJobError, JobStop, Limits
from hadron_hf.engine.fallback import FallbackChatModel
from hadron_hf.engine.interrupts import InterruptGuard, raise_interrupt
from hadron_hf.engine.local_models import LocalModels, build_backend
from hadron_hf.engine.progress import PriceTable, RunProgress, should_show
from hadron_hf.engine.resilience import ResilientChatModel
from hadron_hf.errors import FatalBackendError

BackendWrapper = Callable[[ModelConfig, ChatModel], ChatModel]
"""``(model_config, backend) -> model``: a layer under retries and limits (the Ray engine's permits)."""

_POLL_S = 0.02
BATCH_IN_FLIGHT = 2**31
"""The concurrency cap of a batch-mode endpoint: in effect none (``max_concurrency`` is for live calls)."""


@dataclass
class Runtime:
    """One config's model stack in one event loop, with its counters, stop and lifetime.

    ``routes`` holds, per ``AutoReasonConfig.teacher_routes`` entry in order, its compiled pattern and the
    role models with that route's teacher.
    """

    roles: RoleModels
    endpoints: dict[str, Endpoint]
    store: CacheStore | None
    routes: tuple[tuple[re.Pattern[str], RoleModels], ...] = ()
    settings: TournamentSettings = field(default_factory=TournamentSettings)
    stop: JobStop = field(default_factory=JobStop)
    grace_s: float = 10.0
    progress: RunProgress | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_close: Callable[[Runtime], None] | None = None
    close_when_idle: bool = True
    active_batches: int = 0
    closed: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _interrupts: InterruptGuard | None = None
    _interrupt_sent: bool = False

    @property
    def cache(self) -> CacheStore | None:
        """The cache store (``None`` with ``cache=False``)."""
        return self.store

    def roles_for(self, text: str) -> RoleModels:
        """The role models for a prompt: the first teacher route whose pattern is found in ``text`` wins."""
        for pattern, roles in self.routes:
            if pattern.search(text):
                return roles
        return self.roles

    def stats(self) -> CallStats:
        """Counters summed over every endpoint."""
        return CallStats.total(e.stats for e in self.endpoints.values())

    def halt(self, exc: BaseException) -> None:
        """Stop the job: no new attempt starts on any endpoint; calls in flight may still land."""
        self.stop.stop(exc, asyncio.get_running_loop().time())
        self._stopped.set()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[Runtime]:
        """Hold the runtime open for one batch; the last batch out closes a runtime that closes when idle.

        On a stopped job every batch waits until the last one is out and the stack is closed, so that
        nothing is left running when the error reaches ``Dataset.map``.
        """
        self.active_batches += 1
        interrupted = False
        try:
            yield self
        except InterruptedJobError:
            interrupted = True
        finally:
            self.active_batches -= 1
            if self.active_batches == 0 and (self.close_when_idle or self.stop.error is not None):
                await self.aclose()
            elif self.stop.error is not None:
                await self._done.wait()
            if isinstance(self.stop.error, InterruptedJobError) and not self._interrupt_sent:
                # Ctrl+C reaches the caller as KeyboardInterrupt raised by the loop itself, not as a task's
                # result: a task ending in KeyboardInterrupt hangs run_until_complete(gather(...)), which is
                # how Dataset.map cleans up after an error.
                self._interrupt_sent = True
                asyncio.get_running_loop().call_soon(raise_interrupt)
        if interrupted:
            raise asyncio.CancelledError  # Dataset.map swallows cancelled batches and re-raises the interrupt

    async def run_rows(self, coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
        """Run a batch's rows; on a stop, give calls in flight ``grace_s`` to land, then raise one error.

        Returns:
            Each row's result, in order.

        Raises:
            FatalBackendError: the job stopped (wrong key, unknown model, endpoint down), here or in
                another batch; completed calls, including those that landed during the grace, are cached.
            InterruptedJobError: the user pressed Ctrl+C (``batch()`` then raises ``KeyboardInterrupt`` from
                the loop).
        """
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(c) for c in coros]
        for task in tasks:
            task.add_done_callback(self._row_done)
        everything = asyncio.gather(*tasks, return_exceptions=True)
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({everything, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if self.stop.error is None:
                return [r for r in everything.result()]
            deadline = (self.stop.at or loop.time()) + self.grace_s
            while self.stats().in_flight > 0 and loop.time() < deadline and not everything.done():
                await asyncio.sleep(_POLL_S)
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(everything, return_exceptions=True)
        raise self.stop_error()

    def stop_error(self) -> BaseException:
        """The error to raise for the stopped job (a fresh copy)."""
        error = self.stop.error
        return copy.copy(error) if error is not None else RuntimeError("the job is not stopped")

    async def aclose(self) -> None:
        """Close the clients, flush and close the store, free local models it owns (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._interrupts is not None:
            self._interrupts.remove()
        try:
            for close in self.closers:
                with contextlib.suppress(Exception):
                    await close()
        finally:
            if self.progress is not None:
                self.progress.close()
            if self.on_close is not None:
                self.on_close(self)
            self._done.set()

    def _row_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, FatalBackendError):
            self.halt(exc)


def _display_name(cfg: ModelConfig) -> str:
    where = cfg.identity().split("|")[1]
    return f"{cfg.model} at {where}" if where else cfg.model


def _every_model(config: AutoReasonConfig) -> list[ModelConfig]:
    roles = [*config.role_models().values(), *(r.model for r in config.teacher_routes), *config.judge_pool_models()]
    return [m for top in roles for m in (top, *top.fallbacks)]


def build_runtime(config: AutoReasonConfig, *, store: CacheStore | None = None,
                  local_models: LocalModels | None = None, wrap_backend: BackendWrapper | None = None) -> Runtime:
    """Build the model stack of ``config`` for the running event loop.

    Args:
        config: the job's configuration.
        store: the cache store (default: a ``SQLiteStore`` at ``config.cache_path()`` when ``config.cache``).
        local_models: where in-process models come from (default: loaded for this runtime, freed with it).
        wrap_backend: a layer put under each request shape's retries (the Ray engine's permits).

    Raises:
        ConfigError: two models share an endpoint key but disagree on its limits.
    """
    models = _every_model(config)
    check_shared_endpoints(models)
    loop = asyncio.get_running_loop()
    stop = JobStop()
    closers: list[Callable[[], Awaitable[None]]] = []
    if store is None and config.cache:
        store = SQLiteStore(config.cache_path())
        closers.append(store.aclose)
    if local_models is None:
        local_models = LocalModels()
        owned = local_models
        closers.append(lambda: asyncio.to_thread(owned.close))
    endpoints: dict[str, Endpoint] = {}
    shapes: dict[str, ResilientChatModel] = {}
    batch_models: list[ChatModel] = []  # their batches' states show in the progress line
    logical: dict[str, ChatModel] = {}

    def shape(cfg: ModelConfig) -> ResilientChatModel:
        # A client per request shape (extra_body changes the request), limits per endpoint key.
        ident = f"{cfg.endpoint_key()}#{cfg.request_fingerprint()}"
        if ident not in shapes:
            if cfg.endpoint_key() not in endpoints:
                limits = Limits(cfg.max_concurrency, cfg.rpm, cfg.tpm, cfg.max_retries, config.fail_fast_after)
                if cfg.mode == "batch":  # every row's call waits in the provider's batch queue, none in our slots
                    limits = Limits(BATCH_IN_FLIGHT, None, None, cfg.max_retries, config.fail_fast_after,
                                    probe=False)
                endpoints[cfg.endpoint_key()] = Endpoint(_display_name(cfg), limits, stop, cfg.identity())
            backend = build_backend(cfg, local_models, config.cache_path() if config.cache else None)
            close = getattr(backend, "aclose", None) if cfg.backend in ("openai", "openai_sdk") else None
            if close is not None:
                closers.insert(0, close)  # clients close before the store flushes
            if cfg.mode == "batch":
                batch_models.append(backend)
            if wrap_backend is not None:
                backend = wrap_backend(cfg, backend)
            shapes[ident] = ResilientChatModel(backend, _display_name(cfg), endpoint=endpoints[cfg.endpoint_key()])
        return shapes[ident]

    def model(cfg: ModelConfig) -> ChatModel:
        # Cached under the logical model, above its fallback chain: a resumed job replays what the backup
        # answered without asking anyone, and Completion.model still says who answered.
        members = [cfg, *cfg.fallbacks]
        ident = " -> ".join(f"{m.endpoint_key()}#{m.request_fingerprint()}" for m in members)
        if ident not in logical:
            inner: ChatModel = shape(cfg)
            if cfg.fallbacks:
                chain = [shape(m) for m in members]
                inner = FallbackChatModel(chain, [_display_name(m) for m in members], reopen=[c.reopen for c in chain])
            fingerprint = " -> ".join(m.request_fingerprint() for m in members)
            logical[ident] = CachedChatModel(inner, store, fingerprint) if store is not None else inner
        return logical[ident]

    roles = config.role_models()
    role_models = RoleModels(
        teacher=model(roles["teacher"]), critic=model(roles["critic"]), author=model(roles["author"]),
        synthesizer=model(roles["synthesizer"]), judges=tuple(model(m) for m in config.judge_pool_models()),
    )
    routes = tuple((re.compile(r.pattern), dataclasses.replace(role_models, teacher=model(r.model)))
                   for r in config.teacher_routes)
    grace = min(config.stop_grace_s, max(m.timeout for m in models))
    runtime = Runtime(role_models, endpoints, store, routes, config.settings(), stop, grace, closers=closers)
    runtime.progress = RunProgress(endpoints, PriceTable.from_config(config), should_show(config),
                                   expected_rows=config.progress_total, batch_models=batch_models)
    runtime._interrupts = InterruptGuard(runtime, loop)
    return runtime


class Job:
    """One refinement job: its config, the local models it keeps loaded, and a runtime per event loop.

    Use ``open_job(config)``; ``hadron_hf.scale.ray_engine`` builds one per worker with its store and permits.

    Args:
        config: the configuration.
        store: a cache store for every runtime (the Ray cache actor's); default: a SQLite file per runtime.
        wrap_backend: a layer under each request shape's retries (the Ray engine's permits).
    """

    def __init__(self, config: AutoReasonConfig, *, store: CacheStore | None = None,
                 wrap_backend: BackendWrapper | None = None) -> None:
        self.config = config
        self.local_models = LocalModels()
        self._store = store
        self._wrap_backend = wrap_backend
        self._runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"Job({len(self._runtimes)} runtime(s))"

    def runtime(self) -> Runtime:
        """This job's runtime in the running event loop, built on first use (and again after a stop)."""
        loop = asyncio.get_running_loop()
        runtime = self._runtimes.get(loop)
        if runtime is None or runtime.closed:
            runtime = build_runtime(self.config, store=self._store, local_models=self.local_models,
                                    wrap_backend=self._wrap_backend)
            runtime.close_when_idle = False
            self._runtimes[loop] = runtime
        return runtime

    async def aclose(self) -> None:
        """Close this loop's runtime (for jobs run inside one event loop)."""
        runtime = self._runtimes.pop(asyncio.get_running_loop(), None)
        if runtime is not None:
            await runtime.aclose()

    def close(self) -> None:
        """Close every runtime whose loop is idle, then free the local models."""
        for loop, runtime in list(self._runtimes.items()):
            if not runtime.closed and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(runtime.aclose())
        self._runtimes.clear()
        self.local_models.close()


_CURRENT_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("hadron_hf_job", default=None)


@contextlib.contextmanager
def open_job(config: AutoReasonConfig) -> Iterator[Job]:
    """Run ``Dataset.map(autoreason_map, ...)`` calls with ``config`` as one job, closed when the block ends.

    Inside the block, maps with this config share loaded local models; every HTTP session and cache
    connection is closed when it ends. Without it, each map call builds and closes its own stack.

    Example:
        >>> with open_job(cfg):  # doctest: +SKIP
        ...     out = ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg})
    """
    job = Job(config)
    token = _CURRENT_JOB.set(job)
    try:
        yield job
    finally:
        _CURRENT_JOB.reset(token)
        job.close()


_LIVE: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Runtime]] = weakref.WeakKeyDictionary()


def runtime_for(config: AutoReasonConfig, job: Job | None = None) -> Runtime:
    """The runtime of ``config`` in the running event loop: the given or current job's, else a live default."""
    job = job or _CURRENT_JOB.get()
    if job is not None and job.config == config:
        return job.runtime()
    per_loop = _LIVE.setdefault(asyncio.get_running_loop(), {})
    key = f"{os.getpid()}|{config.model_dump_json()}"
    runtime = per_loop.get(key)
    if runtime is None or runtime.closed:
        runtime = build_runtime(config)
        runtime.on_close = lambda rt: per_loop.pop(key, None) if per_loop.get(key) is rt else None
        per_loop[key] = runtime
    return runtime


@contextlib.asynccontextmanager
async def use_runtime(config: AutoReasonConfig, job: Job | None = None) -> AsyncIterator[Runtime]:
    """Use ``config``'s runtime for a while (one batch); a default runtime closes when its last user leaves."""
    runtime = runtime_for(config, job)
    async with runtime.batch():
        yield runtime
