"""``hadron-hf build``: one resumable command from a prompt collection to published training sets.

It samples prompts from a Hub dataset (streamed: a 1M-row source is never loaded for a 1k-row sample), a
local file (``.jsonl``/``.json``/``.csv``/``.parquet``/``.txt``), a ``save_to_disk`` folder or the bundled
prompts (``bundled``); finds the prompt column; drops duplicate prompts; refines the sample with
``autoreason_map``; and writes the refined dataset and its training views, each with a dataset card. With
``--push-to-hub NAMESPACE/PREFIX`` every output goes to its own Hub dataset repo: ``PREFIX-refined``,
``PREFIX-sft``, ``PREFIX-dpo`` and ``PREFIX-critic`` (one repo per trainer, loadable without a config name).

Re-running the same command draws the same sample and sends the same requests, so every call completed
before an interruption comes from the request cache; the summary says how many.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, Features, IterableDataset, List, load_dataset
from huggingface_hub import DatasetCard, DatasetCardData

from hadron_hf.cards import Lineage, generation_settings, size_category
from hadron_hf.config import AutoReasonConfig
from hadron_hf.errors import ConfigError, FatalBackendError, InputError
from hadron_hf.summary import RunSummary, summarize
from hadron_hf.views import MESSAGES, OPTION_TYPES, VIEW_NAMES, build_view

PROMPT_COLUMNS: tuple[str, ...] = ("prompt", "text", "instruction", "question", "messages", "turns")
"""Columns tried, in order, when no prompt column is given."""
BUNDLED = "bundled"
"""The input name that means the prompts shipped with hadron_hf."""
DEFAULT_VIEWS: tuple[str, ...] = ("sft", "dpo", "critic")
Method = Literal["random", "first", "stratified"]
_LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")  # a missing file, not a Hub name
_MIN_POOL = 1_000  # rows scanned at least for a stratified sample, and the least shuffle buffer of a stream


@dataclass(frozen=True)
class SampleSpec:
    """How to draw the sample.

    Args:
        limit: rows wanted (``None``: every row).
        seed: seed of the random and stratified draws.
        method: ``"random"``, ``"first"`` (the first rows in order) or ``"stratified"`` (each value of
            ``stratify_column`` gets its share of ``limit``, drawn from a random pool of
            ``max(10 * limit, 1000)`` distinct prompts).
        stratify_column: the category column of a stratified sample.
        dedup: drop rows whose prompt is identical to an earlier one's.
        split: the split of a source with several.
    """

    limit: int | None = None
    seed: int = 0
    method: Method = "random"
    stratify_column: str = "category"
    dedup: bool = True
    split: str = "train"


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
    data, streamed = _open(source, spec.split)
    columns = data.column_names or list(next(iter(data.take(1)), {}))
    column = detect_prompt_column(columns, prompt_column, source)
    if spec.method == "stratified" and spec.stratify_column not in columns:
        raise InputError(f"{source} has no column {spec.stratify_column!r} to stratify by; its columns are "
                         f"{columns}. Choose one with --stratify-column.")
    ordered: Any = data
    if spec.method != "first" and streamed:  # a stream is shuffled within a buffer: it is never read whole
        ordered = data.shuffle(seed=spec.seed, buffer_size=max(_MIN_POOL, 10 * (spec.limit or 0)))
    elif spec.method != "first":
        ordered = data.shuffle(seed=spec.seed, keep_in_memory=True)
    strata = spec.limit if spec.method == "stratified" else None  # drawn from a pool of distinct prompts
    want = spec.limit if strata is None else max(_MIN_POOL, 10 * strata)
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
class Output:
    """One written output: its name, rows, local folder and card, and Hub address when pushed."""

    name: str
    rows: int
    path: Path
    card: Path
    url: str | None = None


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
          license: str = "other", batch_size: int = 8) -> BuildReport:
    """Sample, refine, and write (and maybe push) the refined dataset and its views, each with its card.

    Args:
        source: a Hub dataset name, a local path, or ``"bundled"``.
        config: the tournament configuration (its ``prompt_column`` is replaced by the detected one).
        output: the folder; ``refined/`` (``save_to_disk``) and one folder per view are written there.
        spec: how to draw the sample.
        prompt_column: the prompt column (``None``: detected).
        views: the training views to write (of ``VIEW_NAMES``).
        push_to: ``NAMESPACE/PREFIX``: push to ``PREFIX-refined`` and ``PREFIX-{view}`` repos.
        private: create pushed repos private.
        license: the cards' license metadata.
        batch_size: rows per ``Dataset.map`` batch.

    Returns:
        The report whose ``render()`` is the closing table.

    Raises:
        InputError: see ``sample_prompts``. ConfigError: a bad ``push_to`` or a refused push.
        FatalBackendError: the model cannot be reached; completed calls stay in the request cache.
    """
    from hadron_hf.map import autoreason_map
    from hadron_hf.recipe import publish_view, write_view

    if push_to is not None and push_to.count("/") != 1:
        raise ConfigError(f"--push-to-hub {push_to!r} must be NAMESPACE/PREFIX")
    if unknown := [v for v in views if v not in VIEW_NAMES]:
        raise ConfigError(f"unknown views {unknown}; choose from {list(VIEW_NAMES)}")
    sample = sample_prompts(source, spec, prompt_column)
    config = config.model_copy(update={"prompt_column": sample.prompt_column})
    print(f"Refining {len(sample.dataset)} prompts (column {sample.prompt_column!r}) of {source} with "
          f"{config.model.model} ({config.model.backend}); {sample.duplicates} duplicate prompts dropped.")
    started = time.perf_counter()
    batch_size = max(batch_size, len(sample.dataset)) if config.uses_batch_api() else batch_size  # one batch per step
    refined = sample.dataset.map(autoreason_map, batched=True, batch_size=batch_size, fn_kwargs={"config": config},
                                 desc="Refining", load_from_cache_file=False)
    summary = summarize(refined, time.perf_counter() - started)
    print(f"Request cache: reused {summary.cached_calls}/{summary.calls} calls"
          + (" from an earlier run" if summary.cached_calls else ""))
    refined_repo = f"{push_to}-refined" if push_to else None
    outputs = [_write_refined(refined, output / "refined", source, spec, config, license, refined_repo, private)]
    lineage = Lineage(refined_repo or str(output / "refined"), "train", source)
    for view in views:
        result = build_view(refined, view, OPTION_TYPES[view](prompt_column=sample.prompt_column))
        path = write_view(result, refined, output / view, lineage, config=config, license=license)
        url = publish_view(result, refined, f"{push_to}-{view}", lineage, private=private, config=config,
                           license=license) if push_to else None
        outputs.append(Output(view, result.rows_out, path, path / "README.md", url))
    return BuildReport(source, spec, sample, summary, outputs)


def _refined_card(refined: Dataset, source: str, spec: SampleSpec, config: AutoReasonConfig, *, license: str,
                  repo_id: str | None = None, hub_metadata: dict[str, Any] | None = None) -> DatasetCard:
    """Sampling, generation settings (model names only, never keys or URLs) and statistics; a pushed card keeps
    the ``configs``/``dataset_info`` that the data push wrote."""
    meta = {k: v for k, v in (hub_metadata or {}).items() if k in ("configs", "dataset_info")}
    data = DatasetCardData(license=license, pretty_name="AutoReason refined prompts",
                           task_categories=["text-generation"], size_categories=[size_category(len(refined))],
                           tags=["hadron_hf", "autoreason", "synthetic"], **meta)
    s = summarize(refined)
    loader = f"load_dataset({repo_id!r}, split=\"train\")" if repo_id else "load_from_disk(\"path/to/refined\")"
    stats = {"rows": f"{s.rows} ({s.ok} refined, {s.errors} failed)", "converged": f"{s.converged_pct:.1f}%",
             "mean iterations": f"{s.mean_iterations:.2f}", "model calls": f"{s.calls}",
             "tokens (prompt / completion)": f"{s.prompt_tokens} / {s.completion_tokens}"}
    body = [
        "# AutoReason refined prompts", "",
        f"Prompts from `{source}` (split `{spec.split}`), sampled `{spec.method}` (limit {spec.limit}, seed "
        f"{spec.seed}, duplicates {'dropped' if spec.dedup else 'kept'}), refined by hadron_hf's AutoReason "
        "tournament (draft, critique, revision, synthesis, blind judge panel, Borda count).", "",
        "## Usage", "", "```python", f"from datasets import {loader.split('(')[0]}", f"ds = {loader}", "```", "",
        "Each row keeps its input columns and adds `draft`, `refined`, `autoreason_trace`, `preference`, "
        "`autoreason_usage`, `reasoning_traces`, `autoreason_status` and `autoreason_error`.", "",
        "## Generation", "", *_table(generation_settings(refined, config)), "", "## Statistics", "", *_table(stats),
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def _table(items: dict[str, str]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in items.items())]


def _write_refined(refined: Dataset, path: Path, source: str, spec: SampleSpec, config: AutoReasonConfig,
                   license: str, repo_id: str | None, private: bool) -> Output:
    from hadron_hf.hub import push_with_card

    refined.save_to_disk(str(path))
    _refined_card(refined, source, spec, config, license=license).save(str(path / "README.md"))
    url = None
    if repo_id is not None:
        url = push_with_card(refined, repo_id, lambda meta: _refined_card(
            refined, source, spec, config, license=license, repo_id=repo_id, hub_metadata=meta), private=private)
    return Output("refined", len(refined), path, path / "README.md", url)


def _open(source: str, split: str) -> tuple[Dataset | IterableDataset, bool]:
    from hadron_hf.sources import bundled_prompts, load_prompts

    if source == BUNDLED and not Path(source).exists():
        return bundled_prompts(), False
    path = Path(source)
    if path.exists() or path.suffix.lower() in _LOCAL_SUFFIXES or source.startswith((".", "/", "~")):
        return load_prompts(source, split=split), False
    try:
        stream = load_dataset(source, split=split, streaming=True)
    except Exception as exc:  # datasets raises many unrelated types for a missing or unreadable dataset
        raise InputError(f"cannot stream {source!r} (split {split!r}): {type(exc).__name__}: {exc}") from None
    return stream, True


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


def run_build(args: argparse.Namespace) -> int:
    """``hadron-hf build`` from parsed arguments; prints the closing table. Returns the exit code."""
    from hadron_hf.cli import config_from_args

    config = config_from_args(args)
    requested = args.prompt_column or (config.prompt_column if "prompt_column" in config.model_fields_set else None)
    spec = SampleSpec(args.limit, config.seed if args.seed is None else args.seed, args.sample,
                      args.stratify_column, not args.keep_duplicates, args.split)
    try:
        report = build(args.input, config, Path(args.output), spec, prompt_column=requested, views=args.views,
                       push_to=args.push_to_hub, private=args.private, license=args.license,
                       batch_size=args.batch_size)
    except FatalBackendError:
        print("hadron-hf: completed calls are in the request cache; re-run the same command to resume",
              file=sys.stderr)
        raise
    print("Build summary\n" + report.render())
    return 0


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf build`` and ``recipes/build.py``."""
    from hadron_hf.cli import add_model_arguments, add_tournament_arguments

    parser.add_argument("input", help="a Hub dataset (streamed), a .jsonl/.json/.csv/.parquet/.txt file, "
                                      f"a save_to_disk folder, or {BUNDLED!r} for the bundled prompts")
    parser.add_argument("--split", default="train")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--limit", type=int, help="refine at most N prompts (default: all)")
    sampling.add_argument("--sample", choices=["random", "first", "stratified"], default="random",
                          help="random (seeded; a shuffle buffer on streams), the first N, or stratified")
    sampling.add_argument("--stratify-column", default="category", help="category column of --sample stratified")
    sampling.add_argument("--keep-duplicates", action="store_true", help="do not drop repeated prompts")
    out = parser.add_argument_group("output")
    out.add_argument("--output", default="hadron-hf-output/build", help="output folder")
    out.add_argument("--views", nargs="+", choices=VIEW_NAMES, default=list(DEFAULT_VIEWS),
                     help="training views to write (default: sft dpo critic)")
    out.add_argument("--push-to-hub", metavar="NAMESPACE/PREFIX",
                     help="push to the Hub repos PREFIX-refined and PREFIX-{view}")
    private = out.add_mutually_exclusive_group()
    private.add_argument("--private", action="store_true", default=True, help="create private repos (default)")
    private.add_argument("--public", dest="private", action="store_false", help="create public repos")
    out.add_argument("--license", default="other", help="the cards' license metadata (default: other)")
    add_model_arguments(parser)
    add_tournament_arguments(parser)
    parser.set_defaults(func=run_build)


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf build`` to the command line."""
    add_build_arguments(subparsers.add_parser(
        "build", help="sample a prompt collection, refine it, write and publish the training sets"))
