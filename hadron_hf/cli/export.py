"""``hadron-hf recipe mlx-lora`` and ``hadron-hf recipe hadron`` (and ``recipes/mlx_lora.py``, ``recipes/hadron.py``):
the exports of a refined dataset to other tools (``hadron_hf.export``)."""

from __future__ import annotations

import argparse

from hadron_hf.cli.options import add_output_arguments, add_refined_input_arguments, refined_input
from hadron_hf.errors import ConfigError
from hadron_hf.export.hadron_rows import to_hadron_rows, write_hadron_rows
from hadron_hf.export.mlx_lora import check_ratios, write_mlx_dataset
from hadron_hf.sources import check_output, load_refined
from hadron_hf.views import SftOptions


def add_migration_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the migration recipe (``hadron-hf recipe hadron``, ``recipes/hadron.py``)."""
    add_refined_input_arguments(parser)
    add_output_arguments(parser, "hadron-hf-output/hadron.jsonl")
    parser.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    parser.set_defaults(func=run_migration)


def run_migration(args: argparse.Namespace) -> int:
    """Load a refined dataset, migrate it and write it; prints what it did. Returns the exit code."""
    source = refined_input(args)
    check_output(args.output, args.overwrite)
    refined = load_refined(source, args.split, args.limit)
    rows = to_hadron_rows(refined, args.prompt_column)
    path = write_hadron_rows(rows, args.output)
    print(f"Migrated {source}: {len(refined)} rows in, {len(rows)} rows out "
          f"({len(refined) - len(rows)} failed rows left out)")
    print(f"Wrote {path}")
    return 0


def add_mlx_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the MLX LoRA recipe (``hadron-hf recipe mlx-lora``, ``recipes/mlx_lora.py``)."""
    add_refined_input_arguments(parser)
    add_output_arguments(parser, "hadron-hf-output/mlx-lora")
    parser.add_argument("--ratios", default="0.8,0.1,0.1", type=_ratios,
                        help="train,valid,test shares of the prompts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    parser.add_argument("--system-prompt", help="a system message to put first when the prompt has none")
    parser.add_argument("--cot", choices=["none", "think"], default="none",
                        help="put the answer's reasoning in <think> tags before it (rows without any are dropped)")
    parser.set_defaults(func=run_mlx_export)


def run_mlx_export(args: argparse.Namespace) -> int:
    """Load a refined dataset and write its MLX LoRA data folder; prints the split. Returns the exit code."""
    source = refined_input(args)
    check_output(args.output, args.overwrite)
    refined = load_refined(source, args.split, args.limit)
    options = SftOptions(args.prompt_column, args.system_prompt, "messages", args.cot)
    export = write_mlx_dataset(refined, args.output, options=options, ratios=args.ratios, seed=args.seed)
    print(f"MLX LoRA data from {source} (seed {args.seed}):\n{export.render()}")
    print(f"Wrote {export.folder}; train with: mlx_lm.lora --model MODEL --train --data {export.folder}")
    return 0


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
        return check_ratios(values)
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(f"expected three shares like 0.8,0.1,0.1: {exc}") from None
