"""The command-line options every command shares, so that they mean the same everywhere: the positional input,
``--split``, ``--limit`` (the first N rows), ``-o/--output`` with ``--overwrite``, ``--push-to-hub`` with
``--private``/``--public``; and the model, engine and tournament options of ``demo``, ``refine``, ``build`` and
``eval``, with ``config_from_args`` that turns them into an ``AutoReasonConfig``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import ConfigError

_OPENAI_HOSTS = {"api.openai.com"}
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The key variable of ``--base-url`` when ``--api-key-env`` is not given."""


REFINED_INPUT = "a refined dataset: a refine/demo/build output folder, a save_to_disk folder, a .parquet/.jsonl file "\
    "or a Hub repo"
"""The help text of a command's input when it reads a refined dataset (``sources.load_refined``)."""


def add_input_arguments(parser: argparse.ArgumentParser, what: str, optional: bool = False) -> None:
    """The positional input (``what`` is its help), ``--split`` and ``--limit``: the same three on every command."""
    parser.add_argument("input", nargs="?" if optional else None, help=what)
    parser.add_argument("--split", default="train", help="split of the input")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of the input (default: all)")


def add_refined_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a recipe reads its refined dataset: the input (optional while ``--input`` is accepted), split, limit."""
    add_input_arguments(parser, REFINED_INPUT, optional=True)
    # The recipes took --input before every command took its input as a positional; old scripts keep working.
    parser.add_argument("--input", dest="input_option", help=argparse.SUPPRESS)


def add_output_arguments(parser: argparse.ArgumentParser, default: str, what: str = "output folder") -> None:
    """``-o/--output`` (``what`` is its help) and ``--overwrite``; commands refuse an occupied output with
    ``hadron_hf.sources.check_output``."""
    parser.add_argument("-o", "--output", default=default, help=what)
    parser.add_argument("--overwrite", action="store_true",
                        help="write into the output even when it exists and is not empty")


def add_hub_arguments(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:  # noqa: A002
    """``--push-to-hub`` and ``--private``/``--public`` (private by default)."""
    group = parser.add_argument_group("Hub")
    group.add_argument("--push-to-hub", metavar=metavar, help=help)
    visibility = group.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True,
                            help="create new Hub repos private (the default)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create new Hub repos public")


def refined_input(args: argparse.Namespace) -> str:
    """The input a recipe was given, positional or through the old ``--input``.

    Raises:
        ConfigError: neither, or two different ones.
    """
    given = [v for v in (args.input, getattr(args, "input_option", None)) if v is not None]
    if not given or len(set(given)) > 1:
        raise ConfigError("give the refined dataset once, as the first argument (e.g. hadron-hf-output/demo)")
    return given[0]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--num-workers``, ``--estimate`` and ``--overwrite-columns``: how a refinement runs."""
    group = parser.add_argument_group("run")
    group.add_argument("--engine", choices=["datasets", "ray"], default="datasets",
                       help="datasets: Dataset.map here; ray: a Ray actor pool (cluster at RAY_ADDRESS, else local)")
    group.add_argument("--num-workers", type=int, default=2, help="Ray worker actors (with --engine ray)")
    group.add_argument("--estimate", action="store_true",
                       help="refine a 3-row sample, print the calls, tokens, cost and time the whole input "
                            "would take, and stop")
    group.add_argument("--overwrite-columns", action="store_true",
                       help="let the output columns (draft, refined, preference, reasoning_traces, autoreason_*) "
                            "replace input columns of the same name")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing the model: a config file, an OpenAI-compatible endpoint or a local GGUF file."""
    group = parser.add_argument_group("model (default: the embedded SmolLM2 model)")
    group.add_argument("--config", help="YAML or JSON file with AutoReasonConfig fields")
    group.add_argument("--base-url", help="OpenAI-compatible /v1 URL")
    group.add_argument("--model", help="model name at --base-url (default: 'default')")
    group.add_argument("--api-key-env", default=None,
                       help=f"environment variable holding the key of --base-url (default: {DEFAULT_KEY_ENV}; "
                            "when given, it must be set)")
    group.add_argument("--model-path", help="a local GGUF file for the embedded llama.cpp backend")
    group.add_argument("--prompt-column", help="column holding the prompt (default: prompt)")
    group.add_argument("--batch", action="store_true",
                       help="call the endpoint through its batch API (/v1/batches): about half the price, answers "
                            "within 24 h; every row is in flight at once")
    group.add_argument("--judge-constraint", choices=["auto", "gbnf", "guided_choice", "guided_regex",
                                                      "structured_outputs", "json_schema", "json_object", "none"],
                       help="how --base-url's server is told to force a ranking line (gbnf: llama.cpp servers; "
                            "see the README)")


def add_tournament_arguments(parser: argparse.ArgumentParser, judges: int | None = None,
                             max_iterations: int | None = None, max_tokens: int | None = None) -> None:
    """Options overriding tournament settings; unset ones (None) keep the config's values."""
    group = parser.add_argument_group("tournament (unset: the config's value)")
    group.add_argument("--judges", type=int, default=judges, help="judges per panel (config default 3)")
    group.add_argument("--max-iterations", type=int, default=max_iterations,
                       help="cap on rounds per row (config default 10)")
    group.add_argument("--max-tokens", type=int, default=max_tokens,
                       help="cap on tokens per answer (config default 1024)")
    group.add_argument("--variant", choices=["paper", "hadron"], help="tournament variant (config default paper)")
    group.add_argument("--seed", type=int, help="base seed of every row's randomness (config default 0)")
    group.add_argument("--judge-max-tokens", type=int, help="cap on each judge reply (config default 512)")
    group.add_argument("--judge-quorum", type=int, help="counted votes a round needs (config default: a majority)")
    group.add_argument("--speculate", choices=["off", "incumbent", "all"],
                       help="start the next round's critique while the judges vote, on A (incumbent) or on every "
                            "candidate (all): same results, shorter wall time, extra calls reported in "
                            "autoreason_usage (config default off)")
    group.add_argument("--batch-size", type=int, default=8, help="rows per map batch (all run concurrently)")
    group.add_argument("--no-cache", action="store_true", help="do not use the request cache")


def config_from_args(args: argparse.Namespace) -> AutoReasonConfig:
    """Build the config from ``--config`` plus command-line overrides.

    Raises:
        ConfigError: ``--model`` or ``--api-key-env`` without ``--base-url``, a missing ``--model-path``, a
            bad config file, or an API key variable that is unset where a key is needed (see ``check_keys``).
    """
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = AutoReasonConfig.from_file(args.config).model_dump(exclude_unset=True)
    base_url = getattr(args, "base_url", None)
    for flag, name in (("--model", "model"), ("--api-key-env", "api_key_env")):
        if getattr(args, name, None) is not None and not base_url:
            raise ConfigError(f"{flag} needs --base-url (the OpenAI-compatible server it applies to); without "
                              "--base-url the model comes from --config, --model-path or the embedded default")
    if base_url:
        key_env = {"api_key_env": args.api_key_env} if args.api_key_env else {}
        if getattr(args, "judge_constraint", None):
            key_env["judge_constraint"] = args.judge_constraint
        base["model"] = ModelConfig(base_url=base_url, model=args.model or "default",
                                    **key_env).model_dump(exclude_unset=True)
    elif getattr(args, "model_path", None):
        if not Path(args.model_path).is_file():
            raise ConfigError(f"--model-path {args.model_path}: no such file")
        base["model"] = ModelConfig(backend="llama_cpp", model=Path(args.model_path).stem,
                                    model_path=args.model_path).model_dump(exclude_unset=True)
    overrides = {
        "judges": getattr(args, "judges", None), "max_iterations": getattr(args, "max_iterations", None),
        "max_tokens": getattr(args, "max_tokens", None), "variant": getattr(args, "variant", None),
        "seed": getattr(args, "seed", None), "prompt_column": getattr(args, "prompt_column", None),
        "judge_max_tokens": getattr(args, "judge_max_tokens", None),
        "judge_quorum": getattr(args, "judge_quorum", None),
        "speculate": getattr(args, "speculate", None),
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "no_cache", False):
        base["cache"] = False
    if getattr(args, "overwrite_columns", False):
        base["overwrite_columns"] = True
    if getattr(args, "quiet", False):
        base["progress"] = False
    config = AutoReasonConfig.from_dict(base, source="configuration")
    if getattr(args, "batch", False):
        config = config.with_batch_api()
    check_keys(config)
    return config


def check_keys(config: AutoReasonConfig) -> None:
    """Fail before any request when a key variable that must be set is not.

    A variable must be set when it was named explicitly (``--api-key-env``, or ``api_key_env`` in a config
    file) or when the endpoint is the OpenAI API. Servers on other hosts, loopback ones like
    ``llama_cpp.server`` or vLLM included, may need no key, so the default ``OPENAI_API_KEY`` may be unset.

    Raises:
        ConfigError: naming the role and the variable.
    """
    roles = [*config.role_models().items(), *(("judge", m) for m in config.judge_pool_models()),
             *(("teacher route", r.model) for r in config.teacher_routes)]
    for role, m in roles:
        for model in (m, *m.fallbacks):
            var = model.api_key_env
            if model.backend != "openai" or model.api_key is not None or not var or os.environ.get(var):
                continue
            if "api_key_env" in model.model_fields_set or _is_openai_api(model.base_url):
                raise ConfigError(f"{role} model {model.model!r}: the environment variable {var} is not set; "
                                  "export it, or name the variable that holds the key with --api-key-env")


def _is_openai_api(url: str | None) -> bool:
    return url is None or urlsplit(url).hostname in _OPENAI_HOSTS
