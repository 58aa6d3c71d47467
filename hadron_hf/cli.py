"""The ``hadron-hf`` command: ``demo``, ``refine`` and the recipes.

Each feature module may add a subcommand with ``add_subcommand(subparsers)``; the parser it adds sets
``func(args) -> int``. User errors (``HadronError``, unreadable files) end in one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import ConfigError, HadronError

# Modules that contribute subcommands, in help order; a missing optional module is skipped.
_PLUGINS = ("hadron_hf.recipe", "hadron_hf.report", "hadron_hf.evaluate", "hadron_hf.build")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except HadronError as exc:
        print(f"hadron-hf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hadron-hf: interrupted; completed calls are in the request cache, re-run to resume",
              file=sys.stderr)
        return 130


def run_script(doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None) -> int:
    """The ``main`` of a recipe script: parse with ``add_arguments``, ``run``, and turn our errors into one line.

    Args:
        doc: the script's docstring; its first paragraph becomes the description.
        add_arguments: adds the script's options to the parser.
        run: runs the parsed arguments and returns the exit code.
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0].replace("\n", " "))
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(run(args))
    except HadronError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; completed calls are in the request cache, re-run to resume",
              file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="hadron-hf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = sub.add_parser("demo", help="refine bundled prompts on the embedded model (no key, no network)")
    demo.add_argument("--rows", type=int, default=3, help="how many bundled prompts (default 3)")
    demo.add_argument("--output", default="hadron-hf-output/demo", help="output folder")
    add_tournament_arguments(demo, judges=3, max_iterations=2, max_tokens=128)
    demo.set_defaults(func=run_demo)

    refine = sub.add_parser("refine", help="refine any dataset (file, save_to_disk folder or Hub name)")
    refine.add_argument("input", help="a .jsonl/.json/.csv/.parquet/.txt file, a save_to_disk folder or a Hub name")
    refine.add_argument("--split", default="train")
    refine.add_argument("--limit", type=int, default=None, help="only the first N rows")
    refine.add_argument("--output", default="hadron-hf-output/refined", help="output folder")
    refine.add_argument("--no-views", action="store_true", help="write only the refined dataset, not the views")
    refine.add_argument("--engine", choices=["datasets", "ray"], default="datasets",
                        help="datasets: Dataset.map here; ray: a Ray actor pool (cluster at RAY_ADDRESS, else local)")
    refine.add_argument("--num-workers", type=int, default=2, help="Ray worker actors (with --engine ray)")
    add_model_arguments(refine)
    add_tournament_arguments(refine)
    refine.set_defaults(func=run_refine)

    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_subcommand(sub)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing the model: a config file, an OpenAI-compatible endpoint or a local GGUF file."""
    group = parser.add_argument_group("model")
    group.add_argument("--config", help="YAML or JSON file with AutoReasonConfig fields")
    group.add_argument("--base-url", help="OpenAI-compatible /v1 URL (default: the embedded model)")
    group.add_argument("--model", help="model name at --base-url")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    group.add_argument("--model-path", help="a local GGUF file for the embedded llama.cpp backend")
    group.add_argument("--prompt-column", help="column holding the prompt (default: prompt)")


def add_tournament_arguments(parser: argparse.ArgumentParser, judges: int | None = None,
                             max_iterations: int | None = None, max_tokens: int | None = None) -> None:
    """Options overriding tournament settings; unset ones keep the config's values."""
    group = parser.add_argument_group("tournament")
    group.add_argument("--judges", type=int, default=judges)
    group.add_argument("--max-iterations", type=int, default=max_iterations)
    group.add_argument("--max-tokens", type=int, default=max_tokens)
    group.add_argument("--variant", choices=["paper", "hadron"])
    group.add_argument("--seed", type=int)
    group.add_argument("--batch-size", type=int, default=8, help="rows per map batch (all run concurrently)")
    group.add_argument("--no-cache", action="store_true", help="do not use the request cache")


def config_from_args(args: argparse.Namespace) -> AutoReasonConfig:
    """Build the config from ``--config`` plus command-line overrides."""
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = AutoReasonConfig.from_file(args.config).model_dump(exclude_unset=True)
    if getattr(args, "base_url", None):
        base["model"] = ModelConfig(base_url=args.base_url, model=args.model or "default",
                                    api_key_env=args.api_key_env).model_dump()
    elif getattr(args, "model_path", None):
        if not Path(args.model_path).is_file():
            raise ConfigError(f"--model-path {args.model_path}: no such file")
        base["model"] = ModelConfig(backend="llama_cpp", model=Path(args.model_path).stem,
                                    model_path=args.model_path).model_dump()
    overrides = {
        "judges": args.judges, "max_iterations": args.max_iterations, "max_tokens": args.max_tokens,
        "variant": args.variant, "seed": args.seed, "prompt_column": getattr(args, "prompt_column", None),
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_cache:
        base["cache"] = False
    return AutoReasonConfig.from_dict(base, source="configuration")


def run_demo(args: argparse.Namespace) -> int:
    """``hadron-hf demo``: refine a few bundled prompts on the embedded model and write the views."""
    from hadron_hf.sources import bundled_prompts

    cfg = config_from_args(args).model_copy(update={"judge_max_tokens": 24, "max_iterations": args.max_iterations})
    ds = bundled_prompts().shuffle(seed=cfg.seed).select(range(min(args.rows, 32)))
    print(f"Refining {len(ds)} bundled prompts on the embedded model ({cfg.model.model}), "
          f"{cfg.judges} judges, up to {cfg.max_iterations} rounds each.")
    return _refine_and_write(ds, cfg, Path(args.output), args.batch_size, "hadron_hf bundled prompts")


def run_refine(args: argparse.Namespace) -> int:
    """``hadron-hf refine``: refine any dataset and write it out."""
    from hadron_hf.sources import load_prompts

    cfg = config_from_args(args)
    ds = load_prompts(args.input, split=args.split, limit=args.limit)
    if cfg.prompt_column not in ds.column_names:
        raise ConfigError(f"{args.input} has no column {cfg.prompt_column!r}; its columns are {ds.column_names}. "
                          "Choose one with --prompt-column.")
    print(f"Refining {len(ds)} rows of {args.input} with {cfg.model.model} ({cfg.model.backend}).")
    workers = args.num_workers if args.engine == "ray" else None
    return _refine_and_write(ds, cfg, Path(args.output), args.batch_size, args.input, workers,
                             write_views=not args.no_views)


def _refine_and_write(ds: Any, cfg: AutoReasonConfig, output: Path, batch_size: int, source: str,
                      ray_workers: int | None = None, write_views: bool = True) -> int:
    from hadron_hf.map import autoreason_map
    from hadron_hf.summary import summarize

    started = time.perf_counter()
    if ray_workers is None:
        from hadron_hf.runtime import open_job

        with open_job(cfg):  # one job: local models load once, every session is closed at the end
            out = ds.map(autoreason_map, batched=True, batch_size=batch_size, fn_kwargs={"config": cfg},
                         desc="Refining", load_from_cache_file=False)
    else:
        try:
            from hadron_hf.ray import RayOptions, refine_dataset
        except ModuleNotFoundError as exc:
            if exc.name != "ray":
                raise
            raise ConfigError('--engine ray needs Ray: pip install "hadron_hf[ray]"') from None
        out = refine_dataset(ds, cfg, RayOptions(num_workers=ray_workers, batch_size=batch_size))
    elapsed = time.perf_counter() - started
    output.mkdir(parents=True, exist_ok=True)
    out.save_to_disk(str(output / "refined"))
    out.to_json(str(output / "refined.jsonl"))
    print(summarize(out, elapsed).render())
    print(f"Wrote {output / 'refined'} (save_to_disk) and {output / 'refined.jsonl'}")
    if write_views:
        from hadron_hf.cards import Lineage
        from hadron_hf.recipe import write_views as write_training_views

        views = write_training_views(out, output / "views", config=cfg, lineage=Lineage(source),
                                     prompt_column=cfg.prompt_column)
        for name, path in views.items():
            print(f"  {name:<7} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
