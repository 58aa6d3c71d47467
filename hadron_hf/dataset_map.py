"""``autoreason_map``: the AutoReason tournament as a batched async function for ``Dataset.map``."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Sequence
from typing import Any

from hadron_hf import columns as col
from hadron_hf.config import AutoReasonConfig
from hadron_hf.core.prompts import task_text
from hadron_hf.core.tournament import TournamentResult, row_seed, run_tournament
from hadron_hf.engine.progress import PriceTable, RunProgress, progress_for
from hadron_hf.engine.runtime import Job, Runtime, use_runtime
from hadron_hf.errors import BackendError, ConfigError, FatalBackendError, InputError
from hadron_hf.inputs import check_output_columns, normalize_prompt


async def autoreason_map(batch: dict[str, list[Any]], config: AutoReasonConfig,
                         job: Job | None = None) -> dict[str, list[Any]]:
    """Refine every prompt of a batch through the AutoReason tournament.

    Use it with ``Dataset.map(autoreason_map, batched=True, fn_kwargs={"config": cfg})`` (or
    ``IterableDataset.map``). Rows run concurrently; a row that fails gets ``autoreason_status="error"``
    and a message in ``autoreason_error`` while the rest of the batch finishes. Every completed call is
    kept in the request cache, so running the same map again resumes where it stopped.

    When the job must stop (a fatal error in any batch, or Ctrl+C), no new call starts anywhere, calls
    already in flight get ``config.stop_grace_s`` seconds to land and be cached, and every batch raises
    the same error.

    Args:
        batch: a batch of rows; ``config.prompt_column`` holds a string or a list of chat messages.
        config: the tournament configuration.
        job: the job whose model stack to use (``hadron_hf.scale.ray_engine`` passes one); default: the job opened
            with ``open_job(config)``, else a stack of this event loop's own.

    Returns:
        The columns of ``columns.OUTPUT_FEATURES``, each typed.

    Raises:
        ConfigError: the prompt column is missing from the dataset.
        FatalBackendError: the job cannot go on (wrong key, unknown model, dead endpoint). Completed
            calls stay in the cache.
        KeyboardInterrupt: Ctrl+C, once calls in flight have landed.

    Example:
        >>> out = ds.map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})  # doctest: +SKIP
    """
    if config.prompt_column not in batch:
        raise ConfigError(
            f"prompt column {config.prompt_column!r} is not in the dataset; its columns are "
            f"{sorted(batch)}. Set AutoReasonConfig(prompt_column=...)."
        )
    check_output_columns(batch, config.overwrite_columns)
    prompts = batch[config.prompt_column]
    async with use_runtime(config, job) as runtime:
        progress = progress_for(config, runtime)
        progress.start_batch(len(prompts))
        try:
            results = await runtime.run_rows([_counted(refine_row(p, config, runtime), progress) for p in prompts])
        finally:
            progress.end_batch()
    return col.typed_batch(rows_to_columns(results, config.capture_reasoning, progress.prices))


async def _counted(row: Awaitable[TournamentResult | str], progress: RunProgress) -> TournamentResult | str:
    try:
        result = await row
    except asyncio.CancelledError:
        progress.interrupted = True  # the job stopped under this row: it is not done
        raise
    progress.row_done()
    return result


async def refine_row(prompt: Any, config: AutoReasonConfig, runtime: Runtime) -> TournamentResult | str:
    """One row's tournament, or the message explaining why the row failed."""
    try:
        task = normalize_prompt(prompt, config.max_prompt_chars)
        rng = random.Random(row_seed(config.seed, json.dumps(task, sort_keys=True, ensure_ascii=False)))
        return await run_tournament(task, runtime.roles_for(task_text(task)), runtime.settings, rng)
    except FatalBackendError:
        raise
    except (InputError, BackendError) as exc:
        return f"{type(exc).__name__}: {exc}"


def rows_to_columns(results: Sequence[TournamentResult | str], capture_reasoning: bool = True,
                    prices: PriceTable | None = None) -> dict[str, list[Any]]:
    """Lay tournament results (or row error messages) out as our output columns (``prices``: for cost)."""
    out: dict[str, list[Any]] = {name: [] for name in col.OUTPUT_COLUMNS}
    for result in results:
        if isinstance(result, str):
            for name in col.OUTPUT_COLUMNS:
                out[name].append(None)
            out[col.STATUS][-1], out[col.ERROR][-1] = col.STATUS_ERROR, result
            out[col.REASONING][-1] = []
            continue
        for name, value in _row_values(result, capture_reasoning, prices).items():
            out[name].append(value)
    return out


def _row_values(r: TournamentResult, capture_reasoning: bool, prices: PriceTable | None = None) -> dict[str, Any]:
    pref = r.preference
    return {
        col.DRAFT: r.draft,
        col.REFINED: r.refined,
        col.TRACE: {
            "variant": r.variant,
            "converged": r.converged,
            "iterations": len(r.rounds),
            "winner_source": r.winner_source,
            "rounds": [_round_value(rnd) for rnd in r.rounds],
            "quality": r.quality,
            "speculative": [
                {"candidate": d.candidate, "iteration": d.call.iteration, "model": d.call.model,
                 "critique": d.call.answer, "prompt_tokens": d.call.prompt_tokens,
                 "completion_tokens": d.call.completion_tokens}
                for d in r.discarded
            ],
        },
        col.PREFERENCE: {
            "chosen": pref.chosen,
            "rejected": pref.rejected,
            "score_chosen": pref.score_chosen,
            "score_rejected": pref.score_rejected,
            "margin": pref.margin,
        },
        col.USAGE: {
            "calls": len(r.calls),
            "cached_calls": sum(c.cached for c in r.calls),
            "prompt_tokens": sum(c.prompt_tokens for c in r.calls),
            "completion_tokens": sum(c.completion_tokens for c in r.calls),
            "cost_usd": prices.row_cost(r) if prices else None,  # discarded speculative calls included
            "speculative_calls": len(r.discarded),
            "speculative_prompt_tokens": sum(d.call.prompt_tokens for d in r.discarded),
            "speculative_completion_tokens": sum(d.call.completion_tokens for d in r.discarded),
            "speculative_hits": r.speculative_hits,
        },
        col.REASONING: [
            {"role": c.role, "model": c.model, "iteration": c.iteration, "reasoning": c.reasoning,
             "answer": c.answer}
            for c in r.calls
        ] if capture_reasoning else [],
        col.STATUS: col.STATUS_OK,
        col.ERROR: None,
    }


def _round_value(rnd: Any) -> dict[str, Any]:
    return {
        "iteration": rnd.iteration,
        "A": rnd.a,
        "critique": rnd.critique,
        "B": rnd.b,
        "AB": rnd.ab,
        "no_flaws": rnd.no_flaws,
        "merge_order": list(rnd.merge_order),
        "votes": [
            {"judge": v.judge, "model": v.model, "shown": list(v.shown), "ranking": list(v.ranking),
             "parsed": v.parsed, "constrained": v.constrained, "raw": v.raw, "error": v.error, "reask": v.reask}
            for v in rnd.votes
        ],
        "scores": dict(rnd.scores),
        "winner": rnd.winner,
        "fail_safe": rnd.fail_safe,
        "votes_skipped": rnd.votes_skipped,
        "undecided": rnd.undecided,
        "quorum": rnd.quorum,
        "reasked": rnd.reasked,
    }
