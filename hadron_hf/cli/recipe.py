"""``hadron-hf recipe {sft,dpo,critic,reward,kto,mlx-lora,hadron}``: turn a refined dataset into a TRL
training view, write it with its card, and publish it (the writing is ``hadron_hf.views.write``).

Shared by the command and the thin scripts in ``recipes/``: both build their parser with
``add_recipe_arguments`` and call ``run_recipe``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hadron_hf.cli.export import add_migration_arguments, add_mlx_arguments
from hadron_hf.cli.options import add_hub_arguments, add_output_arguments, add_refined_input_arguments, refined_input
from hadron_hf.config import AutoReasonConfig
from hadron_hf.sources import check_output, load_refined
from hadron_hf.views import VIEW_NAMES, CriticOptions, PairOptions, SftOptions, ViewOptions, build_view
from hadron_hf.views.cards import Lineage
from hadron_hf.views.write import publish_view, write_view

_HELP = {
    "sft": "supervised fine-tuning conversations with the refined answers",
    "dpo": "DPO preference pairs with Borda scores and margins",
    "critic": "critique/revision triples, or conversations that train a critic",
    "reward": "reward-model pairs (full conversations) with margins",
    "kto": "KTO rows: winners labelled true, losers false",
}


def add_recipe_arguments(parser: argparse.ArgumentParser, view: str) -> None:
    """Add the options of one recipe: input, output, Hub, card and the view's own options."""
    add_refined_input_arguments(parser)
    add_output_arguments(parser, f"hadron-hf-output/{view}")
    add_hub_arguments(parser, "REPO_ID", "also push to this Hub dataset repo")
    parser.add_argument("--config-name", default="default", help="dataset config name on the Hub")
    card = parser.add_argument_group("dataset card")
    card.add_argument("--license", default="other", help="license metadata")
    card.add_argument("--pretty-name", help="the card's title")
    card.add_argument("--source-dataset", help="the prompt dataset the refined data came from, for the lineage")
    card.add_argument("--generation-config", metavar="FILE",
                      help="the AutoReasonConfig YAML/JSON used to refine (settings go on the card, never keys)")
    opts = parser.add_argument_group(f"{view} view")
    opts.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    if view != "critic":
        opts.add_argument("--system-prompt", help="a system message to put first when the prompt has none")
    if view == "sft":
        opts.add_argument("--form", choices=["messages", "prompt-completion"], default="messages",
                          help="one conversation, or separate prompt and completion columns")
        opts.add_argument("--cot", choices=["none", "think", "field"], default="none",
                          help="add the answer's reasoning in <think> tags or as a separate field")
    elif view == "critic":
        opts.add_argument("--form", choices=["triple", "messages"], default="triple",
                          help="prompt/draft/critique/revision columns, or conversations that train a critic")
    else:
        opts.add_argument("--rejected", choices=["lowest", "draft"], default="lowest",
                          help="reject the lowest-ranked answer of the final round, or the draft")
        opts.add_argument("--pairs", choices=["one", "all"], default="one",
                          help="one pair per row, or every ordered pair of every decisive round")
        opts.add_argument("--min-margin", type=float, help="drop pairs with a smaller (or unknown) Borda margin")
        opts.add_argument("--drop-ties", action="store_true", help="drop pairs with a zero margin")
    parser.set_defaults(view=view, func=run_recipe)


def options_from_args(args: argparse.Namespace) -> ViewOptions:
    """The view options the parsed arguments ask for."""
    if args.view == "sft":
        return SftOptions(args.prompt_column, args.system_prompt, args.form.replace("-", "_"), args.cot)
    if args.view == "critic":
        return CriticOptions(args.prompt_column, args.form)
    return PairOptions(args.prompt_column, args.system_prompt, args.rejected, args.pairs, args.min_margin,
                       args.drop_ties)


def run_recipe(args: argparse.Namespace) -> int:
    """Run one recipe from parsed arguments: load, build the view, write it with its card, maybe push.

    Raises:
        HadronError: unreadable input, a dataset that is not refined, a bad config file, a refused push.
    """
    view: str = args.view
    source = refined_input(args)
    check_output(args.output, args.overwrite)
    print(f"Loading {source} (split {args.split})")
    refined = load_refined(source, args.split, args.limit)
    config = AutoReasonConfig.from_file(args.generation_config) if args.generation_config else None
    result = build_view(refined, view, options_from_args(args))
    lineage = Lineage(source, args.split, args.source_dataset)
    card_args: dict[str, Any] = {"config": config, "license": args.license, "pretty_name": args.pretty_name}
    output = write_view(result, refined, Path(args.output), lineage, **card_args)
    print(f"{view} view of {source}:\n{result.render()}")
    print(f"Wrote {output} (parquet and README.md)")
    if args.push_to_hub:
        url = publish_view(result, refined, args.push_to_hub, lineage, private=args.private,
                           config_name=args.config_name, **card_args)
        print(f"Pushed to {url} ({'private' if args.private else 'public'}, config {args.config_name})")
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf recipe {sft,dpo,critic,reward,kto,mlx-lora,hadron}`` to the command line."""
    text = "build a TRL training view of a refined dataset (and push it)"
    recipe = subparsers.add_parser("recipe", help=text, description=text[0].upper() + text[1:] + ".")
    views = recipe.add_subparsers(title="views", metavar="VIEW", required=True)
    for view in VIEW_NAMES:
        add_recipe_arguments(views.add_parser(view, help=_HELP[view], description=_HELP[view]), view)
    mlx = "the SFT view as an mlx_lm.lora --data folder (train/valid/test.jsonl, split by prompt)"
    add_mlx_arguments(views.add_parser("mlx-lora", help=mlx, description=mlx))
    migration = "the original Hadron's rows (generation, autoreason_trace, ...) as JSONL"
    add_migration_arguments(views.add_parser("hadron", help=migration, description=migration))
