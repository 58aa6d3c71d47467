"""Run the AutoReason tournament on a Ray cluster: ``map_batches`` over an actor pool, with cluster-wide limits.

Each worker actor runs ``autoreason_map`` (the same code as ``Dataset.map``) on its batches, so the output
columns and, for the same seed and server, their values are those of ``Dataset.map``. Two small actors
hold what must be shared by every worker:

- a ``ClusterLimiter`` (named ``hadron_hf-limiter-<run>``): each endpoint's RPM, TPM and concurrency
  budget. Every call a worker sends, retries included, first takes a permit from it, so the budget is
  the endpoint's, not multiplied by the number of workers. A 429 halves the endpoint's cluster-wide
  concurrency window (successes grow it back by one each); at one call, a 429 pauses it for every worker.
- a ``RequestCache`` (named ``hadron_hf-cache-<run>``) pinned to the driver's node: every completed
  call, committed at once, so a job that dies resumes from there whichever node a row lands on.

Each worker runs one ``runtime.Job`` built with the limiter's permits and the cache actor's store
(``ActorStore``), passed explicitly: the same ``CachedChatModel`` serves over either store.

Install with ``pip install "hadron_hf[ray]"``.

Example:
    >>> import ray.data
    >>> from hadron_hf.scale.ray_engine import RayOptions, refine_ray
    >>> ds = ray.data.read_parquet("s3://bucket/prompts/")  # doctest: +SKIP
    >>> refine_ray(ds, cfg, RayOptions(num_workers=8)).write_parquet("s3://bucket/refined/")  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import datasets
import pyarrow as pa
import ray
import ray.data
from pydantic import BaseModel
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hadron_hf import columns as col
from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.dataset_map import autoreason_map
from hadron_hf.engine.cache import RequestCache
from hadron_hf.engine.runtime import Job
from hadron_hf.errors import ConfigError, HadronError, RateLimitError
from hadron_hf.scale.cluster_limiter import GUARD_S, ClusterLimiter, EndpointBudget


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Args:
        num_workers: worker actors in the pool.
        batch_size: rows per batch; a batch's rows run concurrently.
        tasks_per_worker: Ray tasks each worker runs at once; each runs up to 4 batches concurrently
            (Ray Data's default for async functions), so a worker has up to
            ``batch_size * 4 * tasks_per_worker`` rows in flight.
        worker_cpus: CPUs reserved per worker (the work is mostly waiting on the network).
        cache: ``"driver"``: one cache actor on the driver's node owns the SQLite file at
            ``config.cache_path()``, so resume works wherever rows run (the default, right for any
            cluster); ``"local"``: each worker opens ``config.cache_path()`` on its own node (fastest, and
            right on one machine, where all workers share one file).
        window_s: the window the RPM and TPM budgets count over. Keep 60 s; shorter only for tests.
        guard_s: added to the window when spacing permits (see ``cluster_limiter.GUARD_S``); raise it
            when calls can reach the server more than a second after their permit.
        run_id: names the limiter and cache actors (``hadron_hf-limiter-<run_id>``); random by default.
    """

    num_workers: int = 2
    batch_size: int = 8
    tasks_per_worker: int = 2
    worker_cpus: float = 0.5
    cache: Literal["driver", "local"] = "driver"
    window_s: float = 60.0
    guard_s: float = GUARD_S
    run_id: str | None = None


class PermitChatModel:
    """A ``ChatModel`` that takes a permit from the ``ClusterLimiter`` for every call it sends.

    It sits under ``ResilientChatModel``, so each retry takes its own permit.

    Args:
        inner: the backend.
        limiter: handle of the ``ClusterLimiter`` actor.
        identity: the endpoint key (``ModelConfig.endpoint_key()``).
        holder: who asks (the worker's actor id), for the limiter's stats.
    """

    def __init__(self, inner: ChatModel, limiter: Any, identity: str, holder: str) -> None:
        self.inner = inner
        self.limiter = limiter
        self.identity = identity
        self.holder = holder

    def __repr__(self) -> str:
        return f"PermitChatModel({self.identity!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Wait for a permit, then send the call."""
        tokens = sum(len(m["content"]) for m in messages) / 4 + params.max_tokens
        lease = await self.limiter.acquire.remote(self.identity, tokens, self.holder)
        ok = False
        try:
            done = await self.inner.chat(messages, params)
            ok = True
            return done
        except RateLimitError as exc:
            # Reported before the lease is released, so the limiter knows which epoch it started in.
            self.limiter.overloaded.remote(self.identity, lease, 1.0 if exc.retry_after is None else exc.retry_after)
            raise
        finally:
            self.limiter.release.remote(self.identity, lease, ok)


class ActorStore:
    """The ``CacheStore`` of a ``RequestCache`` that lives in a Ray actor (on the driver's node).

    Args:
        actor: handle of the cache actor.
    """

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __repr__(self) -> str:
        return "ActorStore()"

    async def get(self, key: str) -> Completion | None:
        """The cached completion for ``key``, from the actor."""
        hit: Completion | None = await self.actor.get.remote(key)
        return hit

    async def put(self, key: str, done: Completion) -> None:
        """Store ``done``; returns once the actor has committed it."""
        await self.actor.put.remote(key, done)

    async def aclose(self) -> None:
        """Nothing to release here: the actor belongs to the driver."""


class _BatchRefiner:
    """The callable class Ray Data instantiates once per worker actor: one ``Job`` per worker.

    The job's stack takes its permits from the cluster limiter and keeps its answers in the cache actor;
    both are handed to it here, explicitly.
    """

    def __init__(self, config: AutoReasonConfig, limiter: Any, cache: Any) -> None:
        holder = ray.get_runtime_context().get_actor_id() or "driver"
        wrap = partial(_with_permits, limiter=limiter, holder=holder) if limiter is not None else None
        self.config = config
        self.job = Job(config, store=ActorStore(cache) if cache is not None else None, wrap_backend=wrap)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        values = {name: batch.column(name).to_pylist() for name in batch.column_names}
        return append_output(batch, await autoreason_map(values, self.config, job=self.job))


def _with_permits(cfg: ModelConfig, model: ChatModel, *, limiter: Any, holder: str) -> ChatModel:
    # In-process models (llama_cpp, mlx) are one per worker: nothing cluster-wide to share.
    return PermitChatModel(model, limiter, cfg.endpoint_key(), holder) if cfg.backend == "openai" else model


def append_output(batch: pa.Table, output: Mapping[str, list[Any]]) -> pa.Table:
    """``batch`` with our output columns, typed by ``columns.OUTPUT_FEATURES`` (ours win a name clash)."""
    schema = col.OUTPUT_FEATURES.arrow_schema
    for name in col.OUTPUT_COLUMNS:
        column = pa.array(list(output[name]), type=schema.field(name).type)
        where = batch.schema.get_field_index(name)
        batch = batch.set_column(where, name, column) if where >= 0 else batch.append_column(name, column)
    return batch


def refine_ray(ds: ray.data.Dataset, config: AutoReasonConfig, options: RayOptions | None = None) -> ray.data.Dataset:
    """Refine every row of a Ray dataset through the AutoReason tournament (lazily, like any Ray transform).

    Starts the limiter and (with ``options.cache="driver"``) the cache actor, then returns
    ``ds.map_batches(...)`` over a pool of ``options.num_workers`` actors. Nothing runs until the result
    is consumed (``write_parquet``, ``take_all``, ``materialize``...).

    Args:
        ds: the input; ``config.prompt_column`` holds a string or a list of chat messages.
        config: the tournament configuration; each endpoint's ``rpm``, ``tpm`` and ``max_concurrency``
            hold for the whole cluster.
        options: how to run on Ray.

    Returns:
        ``ds`` with the columns of ``columns.OUTPUT_FEATURES`` added.

    Raises:
        ConfigError: the prompt column is missing.
    """
    options = options or RayOptions()
    names = ds.columns(fetch_if_missing=False)
    if names is not None and config.prompt_column not in names:
        raise ConfigError(f"prompt column {config.prompt_column!r} is not in the dataset; its columns are "
                          f"{sorted(names)}. Set AutoReasonConfig(prompt_column=...).")
    run_id = options.run_id or uuid.uuid4().hex[:12]
    limiter = start_limiter(config, f"hadron_hf-limiter-{run_id}", options.window_s, options.guard_s)
    cache = None
    if config.cache and options.cache == "driver":
        cache = start_cache(config, f"hadron_hf-cache-{run_id}")
        config = config.model_copy(update={"cache": False})  # the workers' cache is the actor
    return ds.map_batches(
        _BatchRefiner,
        fn_constructor_kwargs={"config": _without_local_rates(config), "limiter": limiter, "cache": cache},
        batch_size=options.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=options.num_workers,
                                           max_concurrent_calls_per_actor=options.tasks_per_worker),
        num_cpus=options.worker_cpus,
    )


def start_limiter(config: AutoReasonConfig, name: str, window_s: float = 60.0, guard_s: float = GUARD_S) -> Any:
    """Start the ``ClusterLimiter`` actor for ``config``'s remote endpoints (``None`` when it has none)."""
    models = [m for top in config.all_models() for m in (top, *top.fallbacks)]
    budgets = {m.endpoint_key(): EndpointBudget.of(m) for m in models if m.backend == "openai"}
    if not budgets:
        return None
    actor = ray.remote(ClusterLimiter).options(name=name, num_cpus=0, max_concurrency=100_000)
    return actor.remote(budgets, window_s, guard_s)


def start_cache(config: AutoReasonConfig, name: str) -> Any:
    """Start the ``RequestCache`` actor on this (the driver's) node, over ``config.cache_path()``."""
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(RequestCache).options(name=name, num_cpus=0, scheduling_strategy=here)
    return actor.remote(config.cache_path())


def _without_local_rates(config: AutoReasonConfig) -> AutoReasonConfig:
    # The limiter owns RPM/TPM; a per-worker limiter on top would only slow each worker down further.
    def strip(value: Any) -> Any:
        if isinstance(value, ModelConfig):
            return value.model_copy(update={"rpm": None, "tpm": None})
        if isinstance(value, list | tuple):
            return type(value)(strip(v) for v in value)
        if isinstance(value, BaseModel):
            return value.model_copy(update={k: strip(getattr(value, k)) for k in type(value).model_fields})
        return value

    stripped: AutoReasonConfig = strip(config)
    return stripped


def refine_dataset(ds: datasets.Dataset, config: AutoReasonConfig,
                   options: RayOptions | None = None) -> datasets.Dataset:
    """Refine a Hugging Face dataset on Ray and return it as a Hugging Face dataset, rows in input order.

    Joins the Ray cluster at ``RAY_ADDRESS`` (or starts a local one) unless Ray is already initialised.

    Args:
        ds: the input dataset.
        config: the tournament configuration.
        options: how to run on Ray.

    Returns:
        The same rows and features as ``ds.map(autoreason_map, batched=True, ...)`` gives.

    Raises:
        FatalBackendError: as ``Dataset.map`` would (wrong key, unknown model, dead endpoint).
    """
    options = options or RayOptions()
    if not ray.is_initialized():
        ray.init()
    features = col.output_features(ds.features)
    if len(ds) == 0:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    table = ds.with_format("arrow")[:]
    # Blocks of four batches: one Ray task then runs them all at once, and rows spread over the workers.
    step = max(1, options.batch_size * 4)
    blocks = [table.slice(start, step) for start in range(0, len(ds), step)]
    source = ray.data.from_arrow(blocks)
    source.context.execution_options.preserve_order = True
    source.context.raise_original_map_exception = True  # so a FatalBackendError arrives as itself
    try:
        result = pa.concat_tables(ray.get(refine_ray(source, config, options).to_arrow_refs()))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, HadronError):
            raise exc.cause from None
        raise
    return datasets.Dataset(result.select(list(features)), info=datasets.DatasetInfo(features=features))
