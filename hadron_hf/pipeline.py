"""The one refine pipeline behind ``refine``, ``demo`` and ``build``: refine, save, views, cards, Hub, ``run.json``.

Layout of an output folder (the same for every command):

- ``refined/``: the refined dataset (``save_to_disk``) with its ``README.md`` card;
- ``refined.jsonl``: the same rows as JSON lines;
- ``views/{view}/``: each training view, a Hub-style folder (parquet plus card);
- ``run.json``: what ran: hadron_hf version, time, input, split, rows, the config (no keys), each role's model
  and endpoint (no credentials) and the summary. ``hadron-hf eval`` and ``report`` read it.

Example:
    >>> result = run_pipeline(ds, cfg, Path("out"), RunOptions(source="prompts.jsonl"))  # doctest: +SKIP
    >>> result.summary.calls  # doctest: +SKIP
    42
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset

from hadron_hf.config import AutoReasonConfig
from hadron_hf.errors import ConfigError
from hadron_hf.inputs import check_output_columns
from hadron_hf.sources import RUN_INFO, quiet_progress_bars
from hadron_hf.summary import RunSummary, summarize
from hadron_hf.views.builders import OPTION_TYPES, VIEW_NAMES, build_view
from hadron_hf.views.cards import Lineage, describe_model, package_version, render_refined_card, strip_credentials


@dataclass(frozen=True)
class RunOptions:
    """How to run and what to write.

    Args:
        source: the input's name, for the cards, ``run.json`` and the lineage.
        split: the input's split.
        sampling: how the rows were drawn (for the refined card), e.g. ``"the first 10 rows"``.
        batch_size: rows per ``Dataset.map`` batch (or Ray batch).
        engine: ``"datasets"`` (``Dataset.map`` here) or ``"ray"`` (a Ray actor pool).
        num_workers: Ray worker actors (``engine="ray"``).
        views: the training views to write under ``views/``.
        license: the cards' license metadata.
        push_to: ``NAMESPACE/PREFIX``: push ``PREFIX-refined`` and ``PREFIX-{view}`` dataset repos.
        private: create pushed repos private.
    """

    source: str = "in-memory dataset"
    split: str = "train"
    sampling: str | None = None
    batch_size: int = 8
    engine: Literal["datasets", "ray"] = "datasets"
    num_workers: int = 2
    views: Sequence[str] = VIEW_NAMES
    license: str = "other"
    push_to: str | None = None
    private: bool = True


@dataclass(frozen=True)
class Output:
    """One written output: its name, rows, local folder and card, and Hub address when pushed."""

    name: str
    rows: int
    path: Path
    card: Path
    url: str | None = None


@dataclass(frozen=True)
class RunResult:
    """What a pipeline run made."""

    refined: Dataset
    summary: RunSummary
    outputs: list[Output] = field(default_factory=list)
    run_info: Path | None = None

    def cache_line(self) -> str:
        """How many calls came from the request cache (a resumed run reuses every completed call)."""
        s = self.summary
        earlier = " from an earlier run" if s.cached_calls else ""
        return f"Request cache: reused {s.cached_calls}/{s.calls} calls{earlier}"

    def render(self) -> str:
        """The summary, the cache line and the outputs, as ``refine`` and ``demo`` print them."""
        return f"{self.summary.render()}\n{self.cache_line()}\n{self.render_outputs()}"

    def render_outputs(self) -> str:
        """One ``Wrote ...`` line per output (and ``Pushed to ...`` per Hub repo)."""
        lines = []
        for o in self.outputs:
            lines.append(f"Wrote {o.name:<7} {o.rows:>6} rows  {o.path}")
            if o.url:
                lines.append(f"Pushed to {o.url}")
        if self.run_info:
            lines.append(f"Wrote {self.run_info}")
        return "\n".join(lines)


def refine(ds: Dataset, config: AutoReasonConfig, *, batch_size: int = 8,
           engine: Literal["datasets", "ray"] = "datasets", num_workers: int = 2) -> tuple[Dataset, float]:
    """Refine every row with ``autoreason_map`` (or on Ray). Returns the refined rows and the seconds it took.

    Raises:
        ConfigError: an input column would be overwritten, or Ray is missing for ``engine="ray"``.
        FatalBackendError: the job cannot go on; completed calls stay in the request cache.
    """
    from hadron_hf.dataset_map import autoreason_map

    check_output_columns(ds.column_names, config.overwrite_columns)
    config = config.model_copy(update={"progress_total": len(ds)})
    if config.uses_batch_api():
        # Every row in flight at once, so that each dependent step's calls fill one provider batch.
        batch_size = max(batch_size, len(ds))
    started = time.perf_counter()
    if engine == "ray":
        try:
            from hadron_hf.scale.ray_engine import RayOptions, refine_dataset
        except ModuleNotFoundError as exc:
            if exc.name != "ray":
                raise
            raise ConfigError('--engine ray needs Ray: pip install "hadron_hf[ray]"') from None
        out = refine_dataset(ds, config, RayOptions(num_workers=num_workers, batch_size=batch_size))
    else:
        from hadron_hf.engine.runtime import open_job

        with open_job(config):  # one job: local models load once, every session is closed at the end
            out = ds.map(autoreason_map, batched=True, batch_size=batch_size, fn_kwargs={"config": config},
                         load_from_cache_file=False)
    return out, time.perf_counter() - started


def run_pipeline(ds: Dataset, config: AutoReasonConfig, output: Path, options: RunOptions) -> RunResult:
    """Refine ``ds`` and write the output folder (see the module docstring), pushing when asked.

    Args:
        ds: the prompts (``config.prompt_column`` holds them).
        config: the tournament configuration.
        output: the output folder (the caller checks that it may be written).
        options: how to run and what to write.

    Returns:
        The refined rows, their summary, the outputs and the ``run.json`` path.

    Raises:
        ConfigError: unknown views, a bad ``push_to``, a clashing input column, a refused push.
        FatalBackendError: the model cannot be reached; completed calls stay in the request cache.
    """
    if unknown := [v for v in options.views if v not in VIEW_NAMES]:
        raise ConfigError(f"unknown views {unknown}; choose from {list(VIEW_NAMES)}")
    if options.push_to is not None and options.push_to.count("/") != 1:
        raise ConfigError(f"--push-to-hub {options.push_to!r} must be NAMESPACE/PREFIX")
    with quiet_progress_bars():
        refined, elapsed = refine(ds, config, batch_size=options.batch_size, engine=options.engine,
                                  num_workers=options.num_workers)
        summary = summarize(refined, elapsed)
        outputs = _write_outputs(refined, config, output, options)
    info = write_run_info(output, config, options, len(ds), summary)
    return RunResult(refined, summary, outputs, info)


def _write_outputs(refined: Dataset, config: AutoReasonConfig, output: Path, options: RunOptions) -> list[Output]:
    from hadron_hf.views.hub import push_with_card
    from hadron_hf.views.write import publish_view, write_view

    output.mkdir(parents=True, exist_ok=True)
    path = output / "refined"
    refined.save_to_disk(str(path))
    refined.to_json(str(output / "refined.jsonl"))
    source = Lineage(options.source, options.split)

    def card(repo_id: str | None = None, meta: dict[str, Any] | None = None) -> Any:
        return render_refined_card(refined, source, config=config, sampling=options.sampling,
                                   license=options.license, repo_id=repo_id, hub_metadata=meta)

    card().save(str(path / "README.md"))
    repo = f"{options.push_to}-refined" if options.push_to else None
    url = push_with_card(refined, repo, lambda meta: card(repo, meta), private=options.private) if repo else None
    outputs = [Output("refined", len(refined), path, path / "README.md", url)]
    lineage = Lineage(repo or str(path), "train", options.source)
    for view in options.views:
        result = build_view(refined, view, OPTION_TYPES[view](prompt_column=config.prompt_column))
        folder = write_view(result, refined, output / "views" / view, lineage, config=config, license=options.license)
        url = publish_view(result, refined, f"{options.push_to}-{view}", lineage, private=options.private,
                           config=config, license=options.license) if options.push_to else None
        outputs.append(Output(view, result.rows_out, folder, folder / "README.md", url))
    return outputs


def write_run_info(output: Path, config: AutoReasonConfig, options: RunOptions, rows: int,
                   summary: RunSummary) -> Path:
    """Write ``<output>/run.json`` (the keys ``hadron-hf report`` and ``eval`` read). Returns its path."""
    roles = {name: describe_model(m) for name, m in config.role_models().items()}
    info = {
        "hadron_hf_version": package_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": options.source,
        "split": options.split,
        "rows": rows,
        "config": config_as_json(config),
        "roles": {**roles, "judges": [describe_model(m) for m in config.judge_pool_models()]},
        "summary": summary.as_dict(),
    }
    output.mkdir(parents=True, exist_ok=True)
    path = output / RUN_INFO
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def config_as_json(config: AutoReasonConfig) -> dict[str, Any]:
    """The config as plain JSON values, with every ``api_key`` left out and credentials cut from base URLs."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (strip_credentials(v) if k == "base_url" and isinstance(v, str) else clean(v))
                    for k, v in value.items() if k not in ("api_key", "progress_total")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    cleaned: dict[str, Any] = clean(config.model_dump(mode="json"))
    return cleaned


@dataclass(frozen=True)
class Estimate:
    """What refining the whole input would take, extrapolated from a refined sample."""

    rows: int
    sample: RunSummary
    seconds: float | None
    rows_at_once: int

    def render(self) -> str:
        """The estimate as a short table."""
        k, s = max(self.sample.rows, 1), self.sample
        scale = self.rows / k
        lines = [f"Estimate for {self.rows} rows, from a sample of {s.rows} (its calls are cached: a real run reuses "
                 "them)",
                 f"  calls   ~{round(s.calls * scale)} ({s.calls / k:.1f} per row)",
                 f"  tokens  ~{_short(s.prompt_tokens * scale)} in, {_short(s.completion_tokens * scale)} out"]
        if s.cost_usd is not None:
            lines.append(f"  cost    ~${s.cost_usd * scale:.4f} (${s.cost_usd / k:.5f} per row)")
        else:
            lines.append("  cost    unknown (set price_input_per_mtok / price_output_per_mtok in the config)")
        if self.seconds is None:
            lines.append("  time    unknown (the sample came from the request cache)")
        else:
            lines.append(f"  time    ~{_duration(self.seconds)} ({self.rows_at_once} rows at once)")
        if s.errors:
            lines.append(f"  note    {s.errors} of the {s.rows} sample rows failed; see their reasons above")
        return "\n".join(lines)


def estimate_run(ds: Dataset, config: AutoReasonConfig, sample_rows: int = 3, batch_size: int = 8) -> Estimate:
    """Refine the first ``sample_rows`` rows and extrapolate calls, tokens, cost and time to all of ``ds``.

    The time assumes rows run ``rows_at_once`` at a time: as many as the teacher endpoint's
    ``max_concurrency`` allows with every judge of a panel in flight, capped by the rpm limit when set.
    """
    sample = ds.select(range(min(sample_rows, len(ds))))
    refined, elapsed = refine(sample, config, batch_size=batch_size)
    summary = summarize(refined, elapsed)
    teacher = config.role_models()["teacher"]
    at_once = max(1, min(len(ds), teacher.max_concurrency // max(1, config.judges)))
    seconds: float | None = None
    if summary.calls > summary.cached_calls and summary.rows:
        per_row = elapsed if len(sample) <= at_once else elapsed / math.ceil(len(sample) / at_once)
        seconds = per_row * math.ceil(len(ds) / at_once)
        if teacher.rpm:
            seconds = max(seconds, 60.0 * summary.calls * len(ds) / summary.rows / teacher.rpm)
    return Estimate(len(ds), summary, seconds, at_once)


def _short(n: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
