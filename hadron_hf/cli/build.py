"""``hadron-hf build`` (and ``recipes/build.py``): sample a prompt collection, refine it, and write and publish
the training sets (``hadron_hf.build`` draws the sample; ``hadron_hf.pipeline`` does the rest)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hadron_hf.build import DEFAULT_VIEWS, SampleSpec, build, draw_sample
from hadron_hf.cli.options import (
    add_engine_arguments,
    add_hub_arguments,
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_tournament_arguments,
    config_from_args,
)
from hadron_hf.errors import FatalBackendError
from hadron_hf.pipeline import estimate_run
from hadron_hf.sources import BUNDLED, check_output, quiet_progress_bars
from hadron_hf.views import VIEW_NAMES


def run_build(args: argparse.Namespace) -> int:
    """``hadron-hf build`` from parsed arguments; prints the closing table. Returns the exit code."""
    if not args.estimate:
        check_output(args.output, args.overwrite)
    config = config_from_args(args)
    requested = args.prompt_column or (config.prompt_column if "prompt_column" in config.model_fields_set else None)
    spec = SampleSpec(args.sample_size, config.seed if args.seed is None else args.seed, args.sample,
                      args.stratify_column, not args.keep_duplicates, args.split, args.limit)
    if args.estimate:
        sample, config = draw_sample(args.input, config, spec, requested, print)
        with quiet_progress_bars():
            print(estimate_run(sample.dataset, config, batch_size=args.batch_size).render())
        return 0
    try:
        report = build(args.input, config, Path(args.output), spec, prompt_column=requested, views=args.views,
                       push_to=args.push_to_hub, private=args.private, license=args.license,
                       batch_size=args.batch_size, engine=args.engine, num_workers=args.num_workers)
    except FatalBackendError:
        print("hadron-hf: completed calls are in the request cache; re-run the same command to resume",
              file=sys.stderr)
        raise
    print("Build summary\n" + report.render())
    print("\n".join(f"Wrote {o.path}" + (f"\nPushed to {o.url}" if o.url else "") for o in report.outputs))
    return 0


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf build`` and ``recipes/build.py``."""
    add_input_arguments(parser, "a Hub dataset (streamed), a .jsonl/.json/.csv/.parquet/.txt file, a save_to_disk "
                                f"folder, or {BUNDLED!r} for the bundled prompts")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--sample-size", type=int, help="refine at most N prompts, drawn by --sample (default: all)")
    sampling.add_argument("--sample", choices=["random", "first", "stratified"], default="random",
                          help="random (seeded; a shuffle buffer on streams), the first N, or stratified")
    sampling.add_argument("--stratify-column", default="category", help="category column of --sample stratified")
    sampling.add_argument("--keep-duplicates", action="store_true", help="do not drop repeated prompts")
    add_output_arguments(parser, "hadron-hf-output/build")
    parser.add_argument("--views", nargs="+", choices=VIEW_NAMES, default=list(DEFAULT_VIEWS),
                        help="training views to write")
    parser.add_argument("--license", default="other", help="the cards' license metadata")
    add_hub_arguments(parser, "NAMESPACE/PREFIX", "push to the Hub repos PREFIX-refined and PREFIX-{view}")
    add_engine_arguments(parser)
    add_model_arguments(parser)
    add_tournament_arguments(parser)
    parser.set_defaults(func=run_build)


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf build`` to the command line."""
    text = "sample a prompt collection, refine it, publish training sets"
    add_build_arguments(subparsers.add_parser("build", help=text, description=text[0].upper() + text[1:] + "."))
