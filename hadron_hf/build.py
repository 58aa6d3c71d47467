"""Sampling for ``hadron-hf build`` (its command is ``hadron_hf.cli.build``): from a prompt collection to
published training sets, resumably.

It samples prompts from a Hub dataset (streamed: a 1M-row source is never loaded for a 1k-row sample), a
local file (``.jsonl``/``.json``/``.csv``/``.parquet``/``.txt``), a ``save_to_disk`` folder or the bundled
prompts (``bundled``); finds the prompt column; drops duplicate prompts; and hands the sample to the refine
pipeline (``hadron_hf.pipeline``, shared with ``refine``), which writes the refined dataset and its training
views, each with a dataset card, and ``run.json``. With
``--push-to-hub NAMESPACE/PREFIX`` every output goes to its own Hub dataset repo: ``PREFIX-refined``,
``PREFIX-sft``, ``PREFIX-dpo`` and ``PREFIX-critic`` (one repo per trainer, loadable without a config name).

Re-running the same command draws the same sample and sends the same requests, so every call completed
before an interruption comes from the request cache; the summary says how many.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, Features, List

from hadron_hf.config import AutoReasonConfig
from hadron_hf.errors import InputError
from hadron_hf.pipeline import Output, RunOptions, run_pipeline
from hadron_hf.sources import open_dataset
from hadron_hf.summary import RunSummary
from hadron_hf.views.builders import MESSAGES

PROMPT_COLUMNS: tuple[str, ...] = ("prompt", "text", "instruction", "question", "messages", "turns")
"""Columns tried, in order, when no prompt column is given."""
DEFAULT_VIEWS: tuple[str, ...] = ("sft", "dpo", "critic")
Method = Literal["random", "first", "stratified"]
_MIN_POOL = 1_000  # rows scanned at least for a stratified sample, and the least shuffle buffer of a stream


@dataclass(frozen=True)
class SampleSpec:
    """How to draw the sample.

    Args:
        size: rows wanted (``None``: every row).
        seed: seed of the random and stratified draws.
        method: ``"random"``, ``"first"`` (the first rows in order) or ``"stratified"`` (each value of
            ``stratify_column`` gets its share of ``size``, drawn from a random pool of
            ``max(10 * size, 1000)`` distinct prompts).
        stratify_column: the category column of a stratified sample.
        dedup: drop rows whose prompt is identical to an earlier one's.
        split: the split of a source with several.
        head: read only the first ``head`` rows of the source (``--limit``), then draw from those.
    """

    size: int | None = None
    seed: int = 0
    method: Method = "random"
    stratify_column: str = "category"
    dedup: bool = True
    split: str = "train"
    head: int | None = None

    def describe(self) -> str:
        """How the sample was drawn, in words (for the refined dataset's card)."""
        how = "in order" if self.method == "first" else f"{self.method}, seed {self.seed}"
        return (f"sampled {how} (size {self.size or 'all'}" + (f" of the first {self.head} rows" if self.head else "")
                + f", duplicates {'dropped' if self.dedup else 'kept'})")


@dataclass(frozen=True)
class Sample:
    """The drawn prompts and how they were drawn."""

    dataset: Dataset
    prompt_column: str
    scanned: int
    duplicates: int
    streamed: bool


def detect_prompt_column(columns: Iterable[str], requested: str | None = None, source: str = "the input") -> str:
    """The prompt column: ``requested`` when given, else the first of ``PROMPT_COLUMNS`` present.

    Raises:
        InputError: the requested column is missing, or none of ``PROMPT_COLUMNS`` is there (it lists the columns).
    """
    columns = list(columns)
    if requested is not None:
        if requested not in columns:
            raise InputError(f"{source} has no column {requested!r}; its columns are {columns}")
        return requested
    found = next((c for c in PROMPT_COLUMNS if c in columns), None)
    if found is None:
        raise InputError(f"{source} has no prompt column (looked for {', '.join(PROMPT_COLUMNS)}); its columns "
                         f"are {columns}. Choose one with --prompt-column.")
    return found


def as_prompt(value: Any) -> Any:
    """A prompt cell as ``autoreason_map`` takes it: a list of strings (multi-turn ``turns``) becomes user
    messages; strings and message lists are kept."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [{"role": "user", "content": v} for v in value]
    return value


def sample_prompts(source: str, spec: SampleSpec, prompt_column: str | None = None) -> Sample:
    """Draw the prompts to refine from a Hub dataset (streamed), a local file or folder, or ``bundled``.

    Args:
        source: a Hub dataset name, a local path, or ``"bundled"``.
        spec: the sample's size, method, seed and de-duplication.
        prompt_column: the prompt column (``None``: detected, see ``detect_prompt_column``).

    Returns:
        The sample, with the prompt column converted by ``as_prompt`` and every other column kept.

    Raises:
        InputError: unreadable source, no prompt or category column, or nothing left to refine.
    """
    data: Any = open_dataset(source, spec.split, streaming=True)
    streamed = not isinstance(data, Dataset)
    if spec.head is not None:
        data = data.take(spec.head) if streamed else data.select(range(min(spec.head, len(data))))
    columns = data.column_names or list(next(iter(data.take(1)), {}))
    column = detect_prompt_column(columns, prompt_column, source)
    if spec.method == "stratified" and spec.stratify_column not in columns:
        raise InputError(f"{source} has no column {spec.stratify_column!r} to stratify by; its columns are "
                         f"{columns}. Choose one with --stratify-column.")
    ordered: Any = data
    if spec.method != "first" and streamed:  # a stream is shuffled within a buffer: it is never read whole
        ordered = data.shuffle(seed=spec.seed, buffer_size=max(_MIN_POOL, 10 * (spec.size or 0)))
    elif spec.method != "first":
        ordered = data.shuffle(seed=spec.seed, keep_in_memory=True)
    strata = spec.size if spec.method == "stratified" else None  # drawn from a pool of distinct prompts
    want = spec.size if strata is None else max(_MIN_POOL, 10 * strata)
    rows, scanned, duplicates = _take_distinct(ordered, column, want, spec.dedup)
    if strata is not None:
        rows = stratify(rows, spec.stratify_column, strata, spec.seed)
    if not rows:
        raise InputError(f"{source} gave no rows to refine")
    for row in rows:
        row[column] = as_prompt(row[column])
    features = dict(data.features) if data.features else None
    feature = (features or {}).get(column)
    if features and isinstance(feature, List) and getattr(feature.feature, "dtype", None) in ("string", "large_string"):
        features[column] = MESSAGES  # turns: a list of strings became user messages
    dataset = Dataset.from_list(rows, features=Features(features) if features else None)
    return Sample(dataset, column, scanned, duplicates, streamed)


def stratify(rows: list[dict[str, Any]], column: str, limit: int, seed: int) -> list[dict[str, Any]]:
    """Keep ``limit`` rows, each value of ``column`` getting its proportional share (largest remainders).

    The rows kept keep their order; within a category they are drawn with ``random.Random(seed)``.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[str(row[column])].append(i)
    limit = min(limit, len(rows))
    exact = {name: limit * len(members) / len(rows) for name, members in groups.items()}
    quota = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(groups, key=lambda name: (quota[name] - exact[name], name))
    for name in by_remainder[: limit - sum(quota.values())]:
        quota[name] += 1
    rng = random.Random(seed)
    kept = sorted(i for name in sorted(groups) for i in rng.sample(groups[name], quota[name]))
    return [rows[i] for i in kept]


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for the closing table."""

    source: str
    spec: SampleSpec
    sample: Sample
    summary: RunSummary
    outputs: list[Output] = field(default_factory=list)

    def render(self) -> str:
        """The closing summary table."""
        s, smp = self.summary, self.sample
        how = f"{self.spec.method}" + ("" if self.spec.method == "first" else f", seed {self.spec.seed}")
        lines = [
            ("source", f"{self.source} ({self.spec.split}{', streamed' if smp.streamed else ''})"),
            ("rows sampled", f"{s.rows} ({how}; {smp.scanned} scanned, {smp.duplicates} duplicates dropped)"),
            ("rows refined", f"{s.ok} ({s.errors} rows with errors)"),
            ("converged", f"{s.converged_pct:.0f}%"),
            ("mean iterations", f"{s.mean_iterations:.2f}"),
            ("calls", f"{s.calls} ({s.cached_calls} reused from the request cache)"),
            ("tokens", f"{s.prompt_tokens} in, {s.completion_tokens} out"),
        ]
        lines += [("cost", f"${s.cost_usd:.4f}")] if s.cost_usd is not None else []  # only with prices set
        lines += [("wall time", f"{s.elapsed_s:.1f} s")] if s.elapsed_s is not None else []
        width = max(len(k) for k, _ in lines)
        table = [f"  {k.ljust(width)}  {v}" for k, v in lines]
        table.append("  outputs")
        for o in self.outputs:
            where = f"{o.path}  card {o.card}" + (f"\n  {'':{width}}  {o.url}" if o.url else "")
            table.append(f"  {('  ' + o.name).ljust(width)}  {o.rows} rows  {where}")
        return "\n".join(table)


def build(source: str, config: AutoReasonConfig, output: Path, spec: SampleSpec, *, prompt_column: str | None = None,
          views: Iterable[str] = DEFAULT_VIEWS, push_to: str | None = None, private: bool = True,
          license: str = "other", batch_size: int = 8, engine: Literal["datasets", "ray"] = "datasets",
          num_workers: int = 2, say: Callable[[str], None] = print) -> BuildReport:
    """Sample, refine, and write (and maybe push) the refined dataset and its views, each with its card.

    Args:
        source: a Hub dataset name, a local path, or ``"bundled"``.
        config: the tournament configuration (its ``prompt_column`` is replaced by the detected one).
        output: the folder; see ``hadron_hf.pipeline`` for what is written there.
        spec: how to draw the sample.
        prompt_column: the prompt column (``None``: detected).
        views: the training views to write (of ``VIEW_NAMES``).
        push_to: ``NAMESPACE/PREFIX``: push to ``PREFIX-refined`` and ``PREFIX-{view}`` repos.
        private: create pushed repos private.
        license: the cards' license metadata.
        batch_size: rows per ``Dataset.map`` batch.
        engine: ``"datasets"`` or ``"ray"``.
        num_workers: Ray worker actors.
        say: where progress messages go.

    Returns:
        The report whose ``render()`` is the closing table.

    Raises:
        InputError: see ``sample_prompts``. ConfigError: a bad ``push_to``, unknown views or a refused push.
        FatalBackendError: the model cannot be reached; completed calls stay in the request cache.
    """
    sample, config = draw_sample(source, config, spec, prompt_column, say)
    options = RunOptions(source=source, split=spec.split, sampling=spec.describe(), batch_size=batch_size,
                         engine=engine, num_workers=num_workers, views=tuple(views), license=license,
                         push_to=push_to, private=private)
    result = run_pipeline(sample.dataset, config, output, options)
    say(result.cache_line())
    return BuildReport(source, spec, sample, result.summary, result.outputs)


def draw_sample(source: str, config: AutoReasonConfig, spec: SampleSpec, prompt_column: str | None,
                say: Callable[[str], None]) -> tuple[Sample, AutoReasonConfig]:
    """Draw the sample (``sample_prompts``), point the config at its prompt column, and say what will run."""
    sample = sample_prompts(source, spec, prompt_column)
    config = config.model_copy(update={"prompt_column": sample.prompt_column})
    say(f"Refining {len(sample.dataset)} prompts (column {sample.prompt_column!r}) of {source} with "
        f"{config.model.model} ({config.model.backend}); {sample.duplicates} duplicate prompts dropped.")
    return sample, config


def _take_distinct(rows: Iterable[dict[str, Any]], column: str, want: int | None,
                   dedup: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Up to ``want`` rows, skipping repeated prompts; also how many rows were read and skipped."""
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    scanned = 0
    for row in rows:
        if want is not None and len(kept) >= want:
            break
        scanned += 1
        key = _prompt_key(row[column])
        if dedup and key in seen:
            continue
        seen.add(key)
        kept.append(dict(row))
    return kept, scanned, scanned - len(kept)


def _prompt_key(value: Any) -> str:
    value = as_prompt(value)
    if isinstance(value, str):
        value = value.strip()
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
