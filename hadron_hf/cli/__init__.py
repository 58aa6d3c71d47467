"""hadron-hf: refine datasets with the AutoReason tournament, then build, publish, inspect and evaluate the
training data it makes.

Every command takes its input as its first argument and writes to ``-o/--output``; an existing, non-empty
output is refused unless ``--overwrite`` is given. ``--limit N`` always means the first N rows, ``--split``
the input's split, ``--private``/``--public`` the visibility of created Hub repos. ``-q/--quiet`` leaves only
errors and the ``Wrote``/``Pushed to`` lines. User errors (``HadronError``, unreadable files, Hub and network
failures) end in one line and exit code 2.

Each feature module adds its subcommand with ``add_subcommand(subparsers)``; the parser it adds sets
``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hadron_hf.cli_options import add_hub_arguments, add_output_arguments
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import ConfigError, HadronError

# Modules that contribute subcommands, in help order; a missing optional module is skipped.
_PLUGINS = ("hadron_hf.recipe", "hadron_hf.report", "hadron_hf.evaluate", "hadron_hf.build")
_FINAL_LINES = ("Wrote ", "Pushed to ")  # what --quiet keeps
_NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "aiohttp", "huggingface_hub",
                    "fsspec"}
_OPENAI_HOSTS = {"api.openai.com"}
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The key variable of ``--base-url`` when ``--api-key-env`` is not given."""

_EPILOG = """\
Start with `hadron-hf demo` (no key, no network). `hadron-hf COMMAND --help` shows each command's options
with their defaults. Run it with `-q` to keep only errors and the paths written."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless its help already says it, or it is an on/off flag), and keeps
    descriptions laid out as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, True, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; sub-commands get the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return run_command(args, "hadron-hf")


def run_script(doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None) -> int:
    """The ``main`` of a recipe script: parse with ``add_arguments``, ``run``, and turn our errors into one line.

    Args:
        doc: the script's docstring; its first paragraph becomes the description.
        add_arguments: adds the script's options to the parser.
        run: runs the parsed arguments and returns the exit code.
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = Parser(description=(doc or "").split("\n\n")[0].replace("\n", " "))
    add_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.func = run
    return run_command(args, parser.prog)


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)``: ``--quiet`` applied, our errors and network failures as one line.

    Returns:
        The command's exit code; 2 for a user error, 130 after Ctrl+C.
    """
    try:
        with _quiet(getattr(args, "quiet", False)):
            return int(args.func(args))
    except HadronError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; completed calls are in the request cache, re-run to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from hadron_hf.sources import one_line

        if _is_network_error(exc):
            print(f"{prog}: error: network or Hub failure: {one_line(exc)}", file=sys.stderr)
        elif isinstance(exc, OSError):  # an unwritable output, a full disk
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        else:
            raise
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = Parser(prog="hadron-hf", description=__doc__.split("\n\n")[0].replace("\n", " "), epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no progress line and no summary: only errors and the paths written")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = sub.add_parser("demo", help="refine bundled prompts on the embedded model (no key, no network)",
                          description="Refine a few bundled prompts on the embedded SmolLM2 model and write the "
                                      "refined dataset and every training view.")
    demo.add_argument("--rows", type=int, default=3, help="how many bundled prompts, drawn at random (seeded)")
    add_output_arguments(demo, "hadron-hf-output/demo")
    add_tournament_arguments(demo, judges=3, max_iterations=2, max_tokens=128)
    demo.set_defaults(func=run_demo)

    refine = sub.add_parser("refine", help="refine any dataset (file, save_to_disk folder, bundled or Hub name)",
                            description="Refine a dataset with the AutoReason tournament and write the refined "
                                        "rows, every training view with its card, and run.json.")
    add_refine_arguments(refine)
    refine.set_defaults(func=run_refine)

    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_subcommand(sub)
    for command in sub.choices.values():
        add_common_arguments(command)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``-q/--quiet`` to a command and to every sub-command below it."""
    if not any("--quiet" in a.option_strings for a in parser._actions):
        # SUPPRESS: a sub-command's default must not undo ``hadron-hf -q COMMAND``.
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                            help="no progress line and no summary: only errors and the paths written")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                add_common_arguments(child)


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf refine``."""
    parser.add_argument("input", help="a .jsonl/.json/.csv/.parquet/.txt file, a save_to_disk folder, 'bundled' "
                                      "(the prompts shipped with hadron_hf) or a Hub dataset name")
    parser.add_argument("--split", default="train", help="split of the input")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (default: all)")
    add_output_arguments(parser, "hadron-hf-output/refined")
    parser.add_argument("--views", nargs="+", default=None, metavar="VIEW",
                        help="training views to write (default: sft dpo critic reward kto)")
    parser.add_argument("--no-views", action="store_true", help="write only the refined dataset, not the views")
    add_hub_arguments(parser, "NAMESPACE/PREFIX", "push the refined dataset and each view to the Hub repos "
                                                  "PREFIX-refined and PREFIX-{view}")
    add_engine_arguments(parser)
    add_model_arguments(parser)
    add_tournament_arguments(parser)


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


def run_demo(args: argparse.Namespace) -> int:
    """``hadron-hf demo``: refine a few bundled prompts on the embedded model and write the views."""
    from hadron_hf.pipeline import RunOptions, run_pipeline
    from hadron_hf.sources import bundled_prompts, check_output

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
    from hadron_hf.inputs import check_output_columns
    from hadron_hf.pipeline import RunOptions, estimate_run, quiet_progress_bars, run_pipeline
    from hadron_hf.sources import check_output, load_prompts
    from hadron_hf.views import VIEW_NAMES

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


def _is_openai_api(url: str | None) -> bool:
    return url is None or urlsplit(url).hostname in _OPENAI_HOSTS


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any(kind.__module__.split(".")[0] in _NETWORK_MODULES for kind in type(exc).__mro__)


class _KeepFinalLines(io.TextIOBase):
    """A stdout that passes on only the ``Wrote``/``Pushed to`` lines (``--quiet``)."""

    def __init__(self, out: Any) -> None:
        self.out, self.pending = out, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith(_FINAL_LINES):
                self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def _quiet(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    from hadron_hf.pipeline import quiet_progress_bars

    with quiet_progress_bars(), contextlib.redirect_stdout(_KeepFinalLines(sys.stdout)):
        yield


def _version() -> str:
    from hadron_hf.cards import package_version

    return package_version()


if __name__ == "__main__":
    raise SystemExit(main())
