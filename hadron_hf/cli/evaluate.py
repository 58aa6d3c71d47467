"""``hadron-hf eval`` (and ``recipes/eval.py``): judge a refined dataset's answers against its drafts with a
blind panel (``hadron_hf.evaluation``), write the judgements and the summary, and optionally push them."""

from __future__ import annotations

import argparse
from typing import Any

from datasets import Dataset

from hadron_hf import columns as col
from hadron_hf.cli.options import (
    REFINED_INPUT,
    add_hub_arguments,
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    check_keys,
    config_from_args,
)
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import ConfigError
from hadron_hf.evaluation.evaluate import EvalSettings, baseline_models, evaluate
from hadron_hf.sources import check_output, load_refined, read_run_info


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf eval``."""
    text = "judge refined answers against the drafts with a blind panel"
    parser = subparsers.add_parser("eval", help=text, description=text[0].upper() + text[1:] + ".")
    add_eval_arguments(parser)
    parser.set_defaults(func=run_eval)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf eval`` and ``recipes/eval.py``."""
    add_input_arguments(parser, REFINED_INPUT)
    add_output_arguments(parser, "hadron-hf-output/eval")
    # The baseline's model (and the judges' when none are given): by default the refinement's own, from the
    # run.json of a refine/demo/build output folder.
    add_model_arguments(parser)
    judges = parser.add_argument_group("judges (configure them apart from the tournament's)")
    judges.add_argument("--judge-base-url", help="OpenAI-compatible /v1 URL of the judges")
    judges.add_argument("--judge-model", action="append", help="a judge model; repeat for a pool")
    judges.add_argument("--judge-api-key-env", default=None,
                        help="variable holding the judges' key (default: OPENAI_API_KEY; when given, it must be set)")
    judges.add_argument("--judges", type=int, default=7, help="judges per row")
    judges.add_argument("--ranking-only", action="store_true", help="judges answer one RANKING line, no reasoning")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--baseline", action="store_true", help="also judge a critique-and-revise baseline")
    group.add_argument("--max-tokens", type=int, default=None,
                       help="cap on the baseline's critique and revision (default: the config's, 1024)")
    group.add_argument("--category-column", default="category", help="break results down by this column")
    group.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    group.add_argument("--seed", type=int, default=None, help="seed of label orders and the bootstrap (default: "
                                                              "the config's, 0)")
    group.add_argument("--no-cache", action="store_true", help="do not use the request cache")
    add_hub_arguments(parser, "REPO", "push judgements, summary and card to this dataset repo")
    parser.set_defaults(max_iterations=None, variant=None)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``hadron-hf eval``: judge, write the outputs, print the summary and optionally push."""
    check_output(args.output, args.overwrite)
    ds = load_refined(args.input, split=args.split, limit=args.limit)
    config, origin = _eval_config(args, ds)
    if config.judge_models is None:
        print(f"note: no --judge-base-url/--judge-model or judge_models given; the {origin} model judges itself")
    settings = EvalSettings(judges=args.judges, baseline=args.baseline, category_column=args.category_column,
                            bootstrap_samples=args.bootstrap, seed=config.seed if args.seed is None else args.seed,
                            reason_first=not args.ranking_only)
    names = ", ".join(dict.fromkeys(m.model for m in config.judge_pool_models()))
    baseline = f" and a critique-and-revise baseline by the {origin} model ({baseline_models(config)})"
    print(f"Judging {len(ds)} rows of {args.input} with {settings.judges} judges ({names})"
          + (baseline if settings.baseline else "") + ".")
    result = evaluate(ds, config, settings)
    paths = result.write(args.output)
    print(result.summary.render_markdown())
    print("Wrote " + ", ".join(str(p) for p in paths))
    if args.push_to_hub:
        print(f"Pushed to {result.push_to_hub(args.push_to_hub, private=args.private)}")
    return 0


def _eval_config(args: argparse.Namespace, ds: Dataset) -> tuple[AutoReasonConfig, str]:
    """The config of an evaluation and where its generation model comes from ("given" or "refinement's own").

    Without --config/--base-url/--model-path, the baseline (and self-judging) use the refinement's own models,
    read from the run.json of a refine/demo/build output folder; with neither, only external judges work.
    """
    config = config_from_args(args)
    origin = "given"
    if not any(getattr(args, n, None) for n in ("config", "base_url", "model_path")):
        info = read_run_info(args.input)
        if info is not None and isinstance(info.get("config"), dict):
            run = AutoReasonConfig.from_dict(info["config"], source=f"the config in {args.input}'s run.json")
            # Only what differs from the defaults counts as set, so a default key variable may stay unset.
            overrides = {k: getattr(config, k) for k in config.model_fields_set}
            config = AutoReasonConfig.from_dict({**run.model_dump(exclude_defaults=True), **overrides},
                                                source="configuration")
            origin = "refinement's own"
        elif args.baseline or not (args.judge_base_url or args.judge_model):
            teachers = sorted({c["model"] for calls in ds[col.REASONING] if calls for c in calls
                               if c["role"] == "teacher"}) if col.REASONING in ds.column_names else []
            raise ConfigError(f"{args.input} has no run.json, so the refinement's own model "
                              f"({', '.join(teachers) or 'unknown'}) is not known here; give its endpoint with "
                              "--base-url and --model (or --config, or --model-path), or judges with "
                              "--judge-base-url/--judge-model and no --baseline")
    if args.judge_base_url or args.judge_model:
        key = {"api_key_env": args.judge_api_key_env} if args.judge_api_key_env else {}
        names = args.judge_model or ["default"]
        pool = [ModelConfig(base_url=args.judge_base_url, model=name, **key) for name in names]
        config = config.model_copy(update={"judge_models": pool})
    check_keys(config)
    return config, origin
