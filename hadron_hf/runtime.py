"""Build the live model stack for a config: backend → rate limits/retries → request cache.

Clients hold sockets bound to one event loop and must never travel inside what ``Dataset.map`` pickles,
so they are built lazily here, once per process, event loop and config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from hadron_hf.cache import CachedChatModel, RequestCache
from hadron_hf.chat import ChatModel
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.fallback import FallbackChatModel
from hadron_hf.resilience import CallStats, Limits, ResilientChatModel
from hadron_hf.tournament import RoleModels, TournamentSettings

_LOCAL_MODELS: dict[tuple[int, str], ChatModel] = {}
BATCH_IN_FLIGHT = 2**31
"""The concurrency cap of a batch-mode endpoint: in effect none (``max_concurrency`` is for live calls)."""
ModelWrapper = Callable[[ModelConfig, ChatModel], ChatModel]
_WRAPPERS: dict[str, list[ModelWrapper]] = {"backend": [], "endpoint": []}


def add_model_wrapper(where: Literal["backend", "endpoint"], wrapper: ModelWrapper) -> None:
    """Wrap every model stack this process builds from now on (``hadron_hf.ray`` uses it in its workers).

    Args:
        where: ``"backend"`` wraps the raw backend, under retries and limits (it sees every attempt);
            ``"endpoint"`` wraps the whole stack, above the request cache.
        wrapper: ``(model_config, model) -> model``.
    """
    _WRAPPERS[where].append(wrapper)


def build_backend(cfg: ModelConfig, store_path: str | os.PathLike[str] | None = None) -> ChatModel:
    """The raw backend for one ``ModelConfig``, without limits or cache.

    Args:
        cfg: the model.
        store_path: the request-cache database, where a batch-mode model records its batches (``None``: kept
            in memory, so a killed job cannot re-attach to them).
    """
    if cfg.backend == "openai" and cfg.mode == "batch":
        from hadron_hf.backends.batch import BatchChatModel, BatchOptions

        options = BatchOptions(cfg.batch_completion_window, cfg.batch_poll_s, cfg.batch_idle_s,
                               cfg.batch_max_requests, cfg.batch_max_bytes)
        return BatchChatModel(cfg.model, cfg.base_url, cfg.resolve_api_key(), store_path, options,
                              extra_body=cfg.extra_body)
    if cfg.backend == "openai":
        from hadron_hf.backends.openai import OpenAIChatModel

        return OpenAIChatModel(cfg.model, cfg.base_url, cfg.resolve_api_key(), cfg.timeout, cfg.extra_body,
                               max_concurrency=cfg.max_concurrency, judge_constraint=cfg.judge_constraint)
    if cfg.backend == "openai_sdk":
        from hadron_hf.backends.openai_sdk import OpenAISDKChatModel

        return OpenAISDKChatModel(cfg.model, cfg.base_url, cfg.resolve_api_key(), cfg.timeout, cfg.extra_body,
                                  max_concurrency=cfg.max_concurrency, judge_constraint=cfg.judge_constraint)
    # In-process models are expensive to load and serialise their own calls: one per process.
    key = (os.getpid(), cfg.identity())
    if key not in _LOCAL_MODELS:
        if cfg.backend == "llama_cpp":
            from hadron_hf.backends.llama_cpp import LlamaCppChatModel

            _LOCAL_MODELS[key] = LlamaCppChatModel(cfg.model_path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                                                   model_name=cfg.model)
        else:
            from hadron_hf.backends.mlx import MlxChatModel

            _LOCAL_MODELS[key] = MlxChatModel(str(cfg.model_path), model_name=cfg.model)
    return _LOCAL_MODELS[key]


@dataclass
class Runtime:
    """The models of one config in one event loop, and their counters.

    ``routes`` holds, per ``AutoReasonConfig.teacher_routes`` entry in order, its compiled pattern and the
    role models with that route's teacher.
    """

    roles: RoleModels
    endpoints: dict[str, ResilientChatModel]
    cache: RequestCache | None
    routes: tuple[tuple[re.Pattern[str], RoleModels], ...] = ()
    settings: TournamentSettings = field(default_factory=TournamentSettings)

    def roles_for(self, text: str) -> RoleModels:
        """The role models for a prompt: the first teacher route whose pattern is found in ``text`` wins."""
        for pattern, roles in self.routes:
            if pattern.search(text):
                return roles
        return self.roles

    def stats(self) -> CallStats:
        """Counters summed over every endpoint."""
        total = CallStats()
        for endpoint in self.endpoints.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(endpoint.stats, name))
        return total


_RUNTIMES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Runtime]] = weakref.WeakKeyDictionary()


def runtime_for(config: AutoReasonConfig) -> Runtime:
    """The runtime of ``config`` in the running event loop, built on first use."""
    per_loop = _RUNTIMES.setdefault(asyncio.get_running_loop(), {})
    key = f"{os.getpid()}|{config.model_dump_json()}"
    if key not in per_loop:
        per_loop[key] = _build(config)
    return per_loop[key]


def _build(config: AutoReasonConfig) -> Runtime:
    cache = RequestCache(config.cache_path()) if config.cache else None
    endpoints: dict[str, ResilientChatModel] = {}
    stacks: dict[str, ChatModel] = {}
    chains: dict[str, ChatModel] = {}

    def stack(cfg: ModelConfig) -> ChatModel:
        ident = cfg.identity()
        if ident not in stacks:
            limits = Limits(cfg.max_concurrency, cfg.rpm, cfg.tpm, cfg.max_retries, config.fail_fast_after)
            if cfg.mode == "batch":  # every row's call waits in the provider's batch queue, none in our slots
                limits = Limits(BATCH_IN_FLIGHT, None, None, cfg.max_retries, config.fail_fast_after)
            backend = build_backend(cfg, config.cache_path() if config.cache else None)
            for wrap in _WRAPPERS["backend"]:
                backend = wrap(cfg, backend)
            endpoints[ident] = ResilientChatModel(backend, _display_name(cfg), limits)
            stacks[ident] = CachedChatModel(endpoints[ident], cache, ident) if cache else endpoints[ident]
            for wrap in _WRAPPERS["endpoint"]:
                stacks[ident] = wrap(cfg, stacks[ident])
        return chain(cfg) if cfg.fallbacks else stacks[ident]

    def chain(cfg: ModelConfig) -> ChatModel:
        # One chain per primary+fallbacks, so every role using it shares which model is down.
        members = [cfg, *cfg.fallbacks]
        key = " -> ".join(m.identity() for m in members)
        if key not in chains:
            models = [stacks[cfg.identity()], *(stack(f) for f in cfg.fallbacks)]
            chains[key] = FallbackChatModel(models, [_display_name(m) for m in members],
                                            reopen=[endpoints[m.identity()].reopen for m in members])
        return chains[key]

    roles = config.role_models()
    models = RoleModels(
        teacher=stack(roles["teacher"]),
        critic=stack(roles["critic"]),
        author=stack(roles["author"]),
        synthesizer=stack(roles["synthesizer"]),
        judges=tuple(stack(m) for m in config.judge_pool_models()),
    )
    routes = tuple((re.compile(r.pattern), dataclasses.replace(models, teacher=stack(r.model)))
                   for r in config.teacher_routes)
    return Runtime(models, endpoints, cache, routes, config.settings())


def _display_name(cfg: ModelConfig) -> str:
    where = cfg.identity().split("|")[1]
    return f"{cfg.model} at {where}" if where else cfg.model
