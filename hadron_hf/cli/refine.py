"""``hadron-hf demo`` and ``hadron-hf refine``: refine the bundled prompts on the embedded model, or any
dataset on any model, through the refine pipeline (``hadron_hf.pipeline``, shared with ``build``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hadron_hf.cli.options import (
    add_engine_arguments,
    add_hub_arguments,
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_tournament_arguments,
    config_from_args,
)
from hadron_hf.errors import ConfigError
from hadron_hf.inputs import check_output_columns
from hadron_hf.pipeline import RunOptions, estimate_run, run_pipeline
from hadron_hf.sources import bundled_prompts, check_output, load_prompts, quiet_progress_bars
from hadron_hf.views import VIEW_NAMES


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf demo`` and ``hadron-hf refine`` to the command line."""
    demo = subparsers.add_parser("demo", help="refine bundled prompts on the embedded model, offline",
                                 description="Refine a few bundled prompts on the embedded SmolLM2 model and write the "
                                             "refined dataset and every training view.")
    demo.add_argument("--rows", type=int, default=3, help="how many bundled prompts, drawn at random (seeded)")
    add_output_arguments(demo, "hadron-hf-output/demo")
    add_tournament_arguments(demo, judges=3, max_iterations=2, max_tokens=128)
    demo.set_defaults(func=run_demo)

    refine = subparsers.add_parser(
        "refine", help="refine a dataset: a file, a folder, 'bundled' or a Hub name",
        description="Refine a dataset with the AutoReason tournament and write the refined rows, every training view "
                    "with its card, and run.json.")
    add_refine_arguments(refine)
    refine.set_defaults(func=run_refine)


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf refine``."""
    add_input_arguments(parser, "a .jsonl/.json/.csv/.parquet/.txt file, a save_to_disk folder, 'bundled' (the prompts "
                                "shipped with hadron_hf) or a Hub dataset name")
    add_output_arguments(parser, "hadron-hf-output/refined")
    parser.add_argument("--views", nargs="+", default=None, metavar="VIEW",
                        help="training views to write (default: sft dpo critic reward kto)")
    parser.add_argument("--no-views", action="store_true", help="write only the refined dataset, not the views")
    add_hub_arguments(parser, "NAMESPACE/PREFIX", "push the refined dataset and each view to the Hub repos "
                                                  "PREFIX-refined and PREFIX-{view}")
    add_engine_arguments(parser)
    add_model_arguments(parser)
    add_tournament_arguments(parser)


def run_demo(args: argparse.Namespace) -> int:
    """``hadron-hf demo``: refine a few bundled prompts on the embedded model and write the views."""
    check_output(args.output, args.overwrite)
    cfg = config_from_args(args).model_copy(update={"judge_max_tokens": args.judge_max_tokens or 24})
    ds = bundled_prompts().shuffle(seed=cfg.seed).select(range(min(args.rows, 32)))
    print(f"Refining {len(ds)} bundled prompts on the embedded model ({cfg.model.model}), "
          f"{cfg.judges} judges, up to {cfg.max_iterations} rounds each.")
    options = RunOptions(source="bundled", sampling=f"{len(ds)} drawn at random (seed {cfg.seed})",
                         batch_size=args.batch_size)
    print(run_pipeline(ds, cfg, Path(args.output), options).render())
    return 0


def run_refine(args: argparse.Namespace) -> int:
    """``hadron-hf refine``: refine any dataset and write it out."""
    if not args.estimate:
        check_output(args.output, args.overwrite)
    cfg = config_from_args(args)
    ds = load_prompts(args.input, split=args.split, limit=args.limit)
    if cfg.prompt_column not in ds.column_names:
        raise ConfigError(f"{args.input} has no column {cfg.prompt_column!r}; its columns are {ds.column_names}. "
                          "Choose one with --prompt-column.")
    check_output_columns(ds.column_names, cfg.overwrite_columns)
    if args.estimate:
        print(f"Refining a sample of {min(3, len(ds))} rows of {args.input} to estimate the whole run.")
        with quiet_progress_bars():
            print(estimate_run(ds, cfg, batch_size=args.batch_size).render())
        return 0
    print(f"Refining {len(ds)} rows of {args.input} with {cfg.model.model} ({cfg.model.backend}).")
    views = () if args.no_views else tuple(args.views or VIEW_NAMES)
    sampling = f"the first {len(ds)} rows" if args.limit is not None else None
    options = RunOptions(source=args.input, split=args.split, sampling=sampling, batch_size=args.batch_size,
                         engine=args.engine, num_workers=args.num_workers, views=views, push_to=args.push_to_hub,
                         private=args.private)
    print(run_pipeline(ds, cfg, Path(args.output), options).render())
    return 0
